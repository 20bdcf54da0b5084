"""Stock levels per SKU."""
from dataclasses import dataclass

from greenlib import percent, title_words, truncate
from pynest_common import Money, parse_sku


class OutOfStock(Exception):
    pass


@dataclass
class Item:
    sku: str
    name: str
    unit_price: Money
    quantity: int = 0

    def __post_init__(self):
        parse_sku(self.sku)  # raises ValueError on a malformed SKU
        if self.quantity < 0:
            raise ValueError("negative quantity")

    @property
    def value(self):
        return self.unit_price.times(self.quantity)


class Inventory:
    def __init__(self, currency="EUR"):
        self.currency = currency
        self._items = {}

    def __len__(self):
        return len(self._items)

    def __contains__(self, sku):
        return sku in self._items

    def add(self, item):
        if item.unit_price.currency != self.currency:
            raise ValueError("%s is priced in %s, not %s"
                             % (item.sku, item.unit_price.currency, self.currency))
        existing = self._items.get(item.sku)
        if existing is None:
            self._items[item.sku] = item
        else:
            existing.quantity += item.quantity
        return self._items[item.sku]

    def remove(self, sku, quantity):
        item = self._items.get(sku)
        if item is None:
            raise KeyError(sku)
        if quantity > item.quantity:
            raise OutOfStock("%s: %d wanted, %d in stock" % (sku, quantity, item.quantity))
        item.quantity -= quantity
        return item.quantity

    def quantity(self, sku):
        item = self._items.get(sku)
        return 0 if item is None else item.quantity

    def total_value(self):
        total = Money.zero(self.currency)
        for item in self._items.values():
            total = total + item.value
        return total

    def low_stock(self, threshold):
        return sorted(sku for sku, item in self._items.items() if item.quantity < threshold)

    def by_category(self):
        out = {}
        for sku in sorted(self._items):
            out.setdefault(parse_sku(sku)[0], []).append(sku)
        return out

    def share_of_value(self, sku):
        """The item's share of the total stock value, in percent."""
        return percent(self._items[sku].value.amount, self.total_value().amount)

    def report(self, width=20):
        lines = []
        for sku in sorted(self._items):
            item = self._items[sku]
            lines.append("%-*s %5d %s" % (width, truncate(title_words(item.name), width),
                                           item.quantity, item.value))
        lines.append("%-*s %5s %s" % (width, "Total", "", self.total_value()))
        return "\n".join(lines)
