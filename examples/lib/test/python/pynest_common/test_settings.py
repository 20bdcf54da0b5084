import pytest

from pynest_common.settings import load_settings, parse_settings, save_settings


def test_parse_ignores_comments_and_blanks():
    text = "# shop settings\n\ncurrency = EUR  # default\nname=Corner Shop\n"
    assert parse_settings(text) == {"currency": "EUR", "name": "Corner Shop"}


def test_parse_rejects_line_without_equals():
    with pytest.raises(ValueError, match="line 2"):
        parse_settings("a = 1\nnonsense\n")


def test_save_then_load(tmp_path):
    path = tmp_path / "shop.conf"
    save_settings(path, {"vat": "0.19", "currency": "EUR"})
    assert path.read_text() == "currency = EUR\nvat = 0.19\n"
    assert load_settings(path) == {"vat": "0.19", "currency": "EUR"}
