from decimal import Decimal

import pytest

from billing import Invoice, Line, invoice_number
from pynest_common import Money


def make_invoice():
    inv = Invoice(invoice_number(2024, 7))
    inv.add(Line("TOOLS-claw-hammer-0001", "Claw hammer", Money(Decimal("12.50")), 2))
    inv.add(Line("GARDEN-rake-0001", "Rake with a very long handle", Money(Decimal("9.99"))))
    return inv


@pytest.mark.parametrize("year,seq,expected", [
    (2024, 7, "INV-2024-000007"),
    (2000, 1, "INV-2000-000001"),
    (2999, 999999, "INV-2999-999999"),
])
def test_invoice_number(year, seq, expected):
    assert invoice_number(year, seq) == expected


@pytest.mark.parametrize("year,seq", [(1999, 1), (2024, 0)])
def test_invoice_number_rejects(year, seq):
    with pytest.raises(ValueError):
        invoice_number(year, seq)


def test_totals():
    inv = make_invoice()
    assert inv.subtotal == Money(Decimal("34.99"))
    assert inv.vat == Money(Decimal("6.65"))
    assert inv.total == Money(Decimal("41.64"))


@pytest.mark.parametrize("percent,discount,total", [
    (0, "0.00", "41.64"),
    (10, "3.50", "37.47"),
    (80, "17.50", "20.81"),  # clamped to 50%
    (-5, "0.00", "41.64"),   # clamped to 0%
])
def test_discount(percent, discount, total):
    inv = make_invoice()
    inv.set_discount(percent)
    assert inv.discount == Money(Decimal(discount))
    assert inv.total == Money(Decimal(total))


def test_line_in_other_currency_is_refused():
    with pytest.raises(ValueError, match="line in USD"):
        Invoice("INV-2024-000001").add(Line("TOOLS-saw-0003", "Saw", Money(Decimal(5), "USD")))


def test_line_quantity_must_be_positive():
    with pytest.raises(ValueError):
        Line("TOOLS-saw-0003", "Saw", Money(Decimal(5)), 0)


def test_render():
    inv = make_invoice()
    inv.set_discount(10)
    assert inv.render().splitlines() == [
        "INV-2024-000007",
        "Claw hammer      x2   25.00 EUR",
        "Rake with a v... x1   9.99 EUR",
        "discount 10%: -3.50 EUR",
        "VAT 19%: 5.98 EUR",
        "total: 37.47 EUR",
    ]
