"""Money: an exact amount in one currency."""
from dataclasses import dataclass
from decimal import Decimal

from greenlib import round_half_up


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str = "EUR"

    def __post_init__(self):
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise ValueError("currency must be a three-letter ISO 4217 code: %r" % self.currency)
        object.__setattr__(self, "amount", round_half_up(self.amount, 2))

    @classmethod
    def parse(cls, text):
        """'12.5 EUR' -> Money(Decimal('12.50'), 'EUR')."""
        amount, _, currency = text.strip().partition(" ")
        return cls(Decimal(amount), currency.strip() or "EUR")

    def _check(self, other):
        if not isinstance(other, Money):
            return NotImplemented
        if other.currency != self.currency:
            raise ValueError("cannot mix %s and %s" % (self.currency, other.currency))
        return None

    def __add__(self, other):
        if self._check(other) is NotImplemented:
            return NotImplemented
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other):
        if self._check(other) is NotImplemented:
            return NotImplemented
        return Money(self.amount - other.amount, self.currency)

    def times(self, factor):
        return Money(self.amount * Decimal(str(factor)), self.currency)

    def allocate(self, parts):
        """Splits into parts shares that differ by at most one cent and sum to self."""
        if parts < 1:
            raise ValueError("parts must be at least 1")
        cents = int(self.amount * 100)
        base, extra = divmod(cents, parts)
        return [Money(Decimal(base + (1 if i < extra else 0)) / 100, self.currency)
                for i in range(parts)]

    @staticmethod
    def zero(currency="EUR"):
        return Money(Decimal(0), currency)

    def __str__(self):
        return "%s %s" % (self.amount, self.currency)
