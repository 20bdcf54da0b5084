"""pynest_common: code shared by every project of the monorepo."""
from pynest_common.ids import parse_sku, sku
from pynest_common.money import Money

__all__ = ["Money", "parse_sku", "sku"]
