"""greenlib: small string and number helpers."""
from greenlib.numbers import clamp, percent, round_half_up
from greenlib.text import slugify, title_words, truncate

__version__ = "1.2.0"
__all__ = ["clamp", "percent", "round_half_up", "slugify", "title_words", "truncate"]
