"""String helpers."""
import re
import unicodedata


def slugify(text, sep="-"):
    """'Hello, World!' -> 'hello-world': ASCII, lower case, words joined by sep."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    return sep.join(words)


def title_words(text):
    """Capitalises every word, keeping the rest of each word as it is."""
    return " ".join(w[:1].upper() + w[1:] for w in text.split())


def truncate(text, width, ellipsis="..."):
    """Cuts text to at most width characters, ending with ellipsis when cut."""
    if width < len(ellipsis):
        raise ValueError("width must be at least len(ellipsis)")
    if len(text) <= width:
        return text
    return text[: width - len(ellipsis)] + ellipsis
