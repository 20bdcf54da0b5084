"""Number helpers."""
from decimal import ROUND_HALF_UP, Decimal


def clamp(value, low, high):
    """value limited to [low, high]."""
    if low > high:
        raise ValueError("low > high")
    return max(low, min(high, value))


def round_half_up(value, places=2):
    """Commercial rounding (2.675 -> 2.68), unlike round()'s banker's rounding."""
    q = Decimal(1).scaleb(-places)
    return Decimal(str(value)).quantize(q, rounding=ROUND_HALF_UP)


def percent(part, whole, places=1):
    """part as a percentage of whole, rounded half up; 0 when whole is 0."""
    if whole == 0:
        return Decimal(0).quantize(Decimal(1).scaleb(-places))
    return round_half_up(Decimal(part) * 100 / Decimal(whole), places)
