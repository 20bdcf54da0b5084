import pytest

from pynest_common import parse_sku, sku


@pytest.mark.parametrize("category,name,number,expected", [
    ("tools", "Claw Hammer!", 42, "TOOLS-claw-hammer-0042"),
    ("Garden", "Rake", 7, "GARDEN-rake-0007"),
    ("toys", "Crème brûlée set", 9999, "TOYS-creme-brulee-set-9999"),
])
def test_sku(category, name, number, expected):
    assert sku(category, name, number) == expected


def test_round_trip():
    assert parse_sku(sku("paint", "Deep Blue 2L", 310)) == ("PAINT", "deep-blue-2l", 310)


@pytest.mark.parametrize("text", ["tools-hammer-0042", "TOOLS-hammer-42", "TOOLS--0042", ""])
def test_parse_rejects(text):
    with pytest.raises(ValueError):
        parse_sku(text)


def test_sku_rejects_empty_name():
    with pytest.raises(ValueError, match="no letters or digits"):
        sku("tools", "!!!", 1)
