"""Amounts of money as a person reads them: with the currency's own number of decimals.

TikTok reports cost in the ad account's currency, and currencies differ in their minor units
(ISO 4217: JPY and KRW have none, USD and EUR two, KWD three), so "103767.00 JPY" or "12.3 USD"
would mislead. Amounts are kept exact (Decimal) everywhere else; this only writes them.
"""

from __future__ import annotations

from decimal import Decimal

# From ISO 4217 List One (current currency and funds codes, published by SIX Group for ISO: the
# "Minor unit" column): the active codes whose minor unit is not 2. Every other active currency has
# 2, hence the default.
MINOR_UNITS_OTHER_THAN_TWO: dict[str, int] = {
    **dict.fromkeys(
        (
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ),
        0,
    ),  # fmt: skip
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
DEFAULT_MINOR_UNITS = 2


def minor_units(currency: str) -> int:
    """Decimals of ``currency`` (an ISO 4217 code) per ISO 4217."""
    return MINOR_UNITS_OTHER_THAN_TWO.get(currency.strip().upper(), DEFAULT_MINOR_UNITS)


def format_amount(amount: Decimal, currency: str) -> str:
    """``amount`` with exactly the currency's decimals: 103767 JPY as ``103767``, 12.3 USD as ``12.30``.

    An amount finer than the currency's minor unit (which TikTok should never send) keeps all its
    digits rather than being rounded out of sight.
    """
    quantum = Decimal(1).scaleb(-minor_units(currency))
    rounded = amount.quantize(quantum)
    return format(rounded if rounded == amount else amount, "f")
