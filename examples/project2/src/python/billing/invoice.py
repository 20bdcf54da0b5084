"""Invoices: lines, a discount, VAT."""
from dataclasses import dataclass, field
from decimal import Decimal

from greenlib import clamp, round_half_up, truncate
from pynest_common import Money, parse_sku


def invoice_number(year, sequence):
    """invoice_number(2024, 7) -> 'INV-2024-000007'."""
    if not 2000 <= year <= 2999 or sequence < 1:
        raise ValueError("bad invoice number parts: %r, %r" % (year, sequence))
    return "INV-%d-%06d" % (year, sequence)


@dataclass
class Line:
    sku: str
    description: str
    unit_price: Money
    quantity: int = 1

    def __post_init__(self):
        parse_sku(self.sku)
        if self.quantity < 1:
            raise ValueError("quantity must be at least 1")

    @property
    def amount(self):
        return self.unit_price.times(self.quantity)


@dataclass
class Invoice:
    number: str
    vat_rate: Decimal = Decimal("0.19")
    discount_percent: Decimal = Decimal(0)
    currency: str = "EUR"
    lines: list = field(default_factory=list)

    def add(self, line):
        if line.unit_price.currency != self.currency:
            raise ValueError("line in %s on an invoice in %s" % (line.unit_price.currency, self.currency))
        self.lines.append(line)
        return self

    def set_discount(self, percent):
        self.discount_percent = clamp(Decimal(str(percent)), Decimal(0), Decimal(50))

    @property
    def subtotal(self):
        total = Money.zero(self.currency)
        for line in self.lines:
            total = total + line.amount
        return total

    @property
    def discount(self):
        return Money(round_half_up(self.subtotal.amount * self.discount_percent / 100), self.currency)

    @property
    def net(self):
        return self.subtotal - self.discount

    @property
    def vat(self):
        return Money(round_half_up(self.net.amount * self.vat_rate), self.currency)

    @property
    def total(self):
        return self.net + self.vat

    def render(self, width=16):
        out = [self.number]
        for line in self.lines:
            out.append("%-*s x%-3d %s" % (width, truncate(line.description, width), line.quantity, line.amount))
        if self.discount_percent:
            out.append("discount %s%%: -%s" % (self.discount_percent, self.discount))
        out.append("VAT %s%%: %s" % (round_half_up(self.vat_rate * 100, 0), self.vat))
        out.append("total: %s" % self.total)
        return "\n".join(out)
