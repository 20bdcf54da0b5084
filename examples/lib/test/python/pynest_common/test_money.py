from decimal import Decimal

import pytest

from pynest_common import Money


@pytest.mark.parametrize("text,amount,currency", [
    ("12.5 EUR", "12.50", "EUR"),
    ("0.005 USD", "0.01", "USD"),
    ("7", "7.00", "EUR"),
    ("-3.333 GBP", "-3.33", "GBP"),
])
def test_parse(text, amount, currency):
    m = Money.parse(text)
    assert m.amount == Decimal(amount)
    assert m.currency == currency


def test_add_and_subtract():
    assert Money(Decimal("1.10")) + Money(Decimal("2.20")) == Money(Decimal("3.30"))
    assert Money(Decimal("5")) - Money(Decimal("0.01")) == Money(Decimal("4.99"))


def test_mixing_currencies_is_refused():
    with pytest.raises(ValueError, match="cannot mix EUR and USD"):
        Money(Decimal(1), "EUR") + Money(Decimal(1), "USD")


@pytest.mark.parametrize("currency", ["eur", "EURO", "E1R", ""])
def test_bad_currency(currency):
    with pytest.raises(ValueError):
        Money(Decimal(1), currency)


@pytest.mark.parametrize("total,parts", [("10.00", 3), ("0.05", 2), ("100", 7), ("1", 1)])
def test_allocate_sums_to_total(total, parts):
    shares = Money(Decimal(total)).allocate(parts)
    assert len(shares) == parts
    assert sum((s for s in shares), Money.zero()) == Money(Decimal(total))
    assert max(s.amount for s in shares) - min(s.amount for s in shares) <= Decimal("0.01")


def test_times_rounds_half_up():
    assert Money(Decimal("2.675")).amount == Decimal("2.68")
    assert Money(Decimal("0.10")).times(3) == Money(Decimal("0.30"))


def test_str():
    assert str(Money(Decimal("3.5"), "CHF")) == "3.50 CHF"
