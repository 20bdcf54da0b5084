from decimal import Decimal

import pytest

from inventory import Inventory, Item, OutOfStock
from pynest_common import Money

HAMMER = "TOOLS-claw-hammer-0001"
SCREWDRIVERS = "TOOLS-screwdriver-set-0002"
RAKE = "GARDEN-rake-0001"


def test_fixture_contents(stocked_inventory):
    assert len(stocked_inventory) == 3
    assert HAMMER in stocked_inventory
    assert "TOOLS-saw-0003" not in stocked_inventory


def test_total_value(stocked_inventory):
    assert stocked_inventory.total_value() == Money(Decimal("197.00"))


def test_adding_an_existing_sku_adds_quantity(stocked_inventory):
    stocked_inventory.add(Item(HAMMER, "claw hammer", Money(Decimal("12.50")), 5))
    assert stocked_inventory.quantity(HAMMER) == 15
    assert len(stocked_inventory) == 3


@pytest.mark.parametrize("quantity,left", [(1, 9), (10, 0), (0, 10)])
def test_remove(stocked_inventory, quantity, left):
    assert stocked_inventory.remove(HAMMER, quantity) == left


def test_remove_more_than_in_stock(stocked_inventory):
    with pytest.raises(OutOfStock, match="4 wanted, 3 in stock"):
        stocked_inventory.remove(SCREWDRIVERS, 4)


def test_remove_unknown_sku(stocked_inventory):
    with pytest.raises(KeyError):
        stocked_inventory.remove("TOOLS-saw-0003", 1)


@pytest.mark.parametrize("threshold,expected", [
    (1, [RAKE]),
    (4, [RAKE, SCREWDRIVERS]),
    (100, [RAKE, HAMMER, SCREWDRIVERS]),
])
def test_low_stock(stocked_inventory, threshold, expected):
    assert stocked_inventory.low_stock(threshold) == expected


def test_by_category(stocked_inventory):
    assert stocked_inventory.by_category() == {"GARDEN": [RAKE], "TOOLS": [HAMMER, SCREWDRIVERS]}


def test_share_of_value(stocked_inventory):
    assert stocked_inventory.share_of_value(HAMMER) == Decimal("63.5")
    assert stocked_inventory.share_of_value(RAKE) == Decimal("0.0")


def test_wrong_currency_is_refused():
    with pytest.raises(ValueError, match="priced in USD"):
        Inventory("EUR").add(Item(HAMMER, "hammer", Money(Decimal(1), "USD"), 1))


def test_bad_sku_is_refused():
    with pytest.raises(ValueError):
        Item("hammer", "hammer", Money(Decimal(1)), 1)


def test_report(stocked_inventory):
    lines = stocked_inventory.report(width=12).splitlines()
    assert lines[0] == "Rake             0 0.00 EUR"
    assert lines[1] == "Claw Hammer     10 125.00 EUR"
    assert lines[2] == "Screwdriv...     3 72.00 EUR"
    assert lines[-1].startswith("Total") and lines[-1].endswith("197.00 EUR")
