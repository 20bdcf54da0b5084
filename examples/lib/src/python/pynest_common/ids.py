"""Stock-keeping unit identifiers: CATEGORY-slug-NNNN."""
import re

from greenlib import slugify

_SKU = re.compile(r"^([A-Z]{2,8})-([a-z0-9]+(?:-[a-z0-9]+)*)-(\d{4})$")


def sku(category, name, number):
    """sku('tools', 'Claw Hammer!', 42) -> 'TOOLS-claw-hammer-0042'."""
    if not 0 <= number <= 9999:
        raise ValueError("number out of range: %d" % number)
    slug = slugify(name)
    if not slug:
        raise ValueError("name has no letters or digits: %r" % name)
    return "%s-%s-%04d" % (slugify(category, sep="").upper(), slug, number)


def parse_sku(text):
    """'TOOLS-claw-hammer-0042' -> ('TOOLS', 'claw-hammer', 42)."""
    m = _SKU.match(text)
    if not m:
        raise ValueError("not a SKU: %r" % text)
    return m.group(1), m.group(2), int(m.group(3))
