"""inventory: what the shop has in stock, and what it is worth."""
from inventory.stock import Inventory, Item, OutOfStock

__all__ = ["Inventory", "Item", "OutOfStock"]
