from decimal import Decimal

import pytest

from inventory import Inventory, Item
from pynest_common import Money, sku


@pytest.fixture
def stocked_inventory():
    inv = Inventory()
    inv.add(Item(sku("tools", "claw hammer", 1), "claw hammer", Money(Decimal("12.50")), 10))
    inv.add(Item(sku("tools", "screwdriver set", 2), "screwdriver set", Money(Decimal("24.00")), 3))
    inv.add(Item(sku("garden", "rake", 1), "rake", Money(Decimal("9.99")), 0))
    return inv
