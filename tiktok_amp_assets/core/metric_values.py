"""Exact parsing of TikTok's string metric values, and the four totals the importer sends.

TikTok's report API writes every metric as a string: money with two decimals in the account
currency (``"12.30"``), counts as integers (``"1000"``). Money is parsed into :class:`~decimal.Decimal`
straight from the text, never through ``float``, so ``"12.30"`` stays ``Decimal("12.30")`` and sums
of many rows stay exact.

Rules:

- ``None`` and the markers in :data:`MISSING_METRIC_VALUES` (``""``, ``"-"``, ``"--"``, ``"N/A"``,
  ``"null"``, ``"None"``, surrounding whitespace ignored) mean *missing*, returned as ``None`` and
  never as zero: a metric TikTok does not report is not a metric that was zero.
- Text must be plain decimal notation (``"12"``, ``"12.30"``); exponents, thousands separators,
  ``NaN``/``Infinity`` and anything else are a :class:`MetricParseError`.
- Negative values are a :class:`MetricParseError`: spend and counts of a report row cannot be
  negative (negative figures only arise as corrections, computed from :class:`MetricTotals`).
- Figures no report reaches are a :class:`MetricParseError` too, rather than a crash further on: a
  count above 2**63 - 1 (the ledger's SQLite integers, like TikTok's own counters, are 64-bit), money
  of 10**15 or more or with more than 6 decimals (sums of a backfill's amounts must stay exact within
  Decimal's 28 digits).
- ``int`` and finite ``float`` (converted through ``str``, so ``12.3`` becomes ``Decimal("12.3")``)
  are accepted too; ``bool`` is not a number here.

:func:`money_column` and :func:`count_column` apply the same rules to a whole column at once and
give typed Arrow arrays (``decimal128(21, 6)`` and ``int64``). Values in TikTok's own plain form
(``"12.30"``, ``"1000"``) and the exact missing markers are checked and converted in bulk; any other
value goes through :func:`parse_money` / :func:`parse_count` one by one, so both paths accept,
refuse and convert exactly the same values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from tiktok_amp_assets.core.tiktok_contract import MISSING_METRIC_VALUES

# ASCII digits only: ``\d`` would also take other scripts' digits, which TikTok never sends.
_DECIMAL_TEXT = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?", re.ASCII)
# Error messages quote the value; cap it so a garbage payload cannot flood the logs.
_MAX_QUOTED_VALUE_LENGTH = 80
MAX_COUNT = 2**63 - 1
MAX_MONEY_INTEGER_DIGITS = 15
MAX_MONEY = Decimal(10) ** MAX_MONEY_INTEGER_DIGITS
MAX_MONEY_PLACES = 6
_MONEY_QUANTUM = Decimal(1).scaleb(-MAX_MONEY_PLACES)
_CENTS = Decimal("0.01")
# Every amount parse_money accepts fits exactly: 15 digits before the point, 6 after.
MONEY_TYPE = pa.decimal128(MAX_MONEY_INTEGER_DIGITS + MAX_MONEY_PLACES, MAX_MONEY_PLACES)
COUNT_TYPE = pa.int64()
# TikTok's own forms, converted in bulk: a subset of what the scalar parsers accept, with the same
# result (anything else, " 12.30" or "+1" included, takes the scalar path). RE2 syntax: "$" is the
# end of the text, never before a trailing newline.
_PLAIN_MONEY_RE2 = rf"^[0-9]{{1,{MAX_MONEY_INTEGER_DIGITS}}}(\.[0-9]{{1,{MAX_MONEY_PLACES}}})?$"
_PLAIN_COUNT_RE2 = r"^[0-9]{1,18}$"  # 18 digits: always below 2**63
_EXACT_MISSING = pa.array(sorted(MISSING_METRIC_VALUES), pa.string())


class MetricParseError(ValueError):
    """A metric value that is neither a number nor a missing-value marker."""

    def __init__(self, field: str, value: object, problem: str, *, row: int | None = None) -> None:
        self.field = field
        self.value = value
        self.row = row  # index in the column, when a whole column was parsed
        quoted = repr(value)
        if len(quoted) > _MAX_QUOTED_VALUE_LENGTH:
            quoted = quoted[:_MAX_QUOTED_VALUE_LENGTH] + "..."
        super().__init__(f"metric {field!r} has value {quoted}: {problem}")


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in MISSING_METRIC_VALUES)


def _exact_decimal(value: object, *, field: str) -> Decimal:
    """``value`` as an exact, finite Decimal; raises MetricParseError for anything else."""
    # bool is an int subclass; True as "1 click" would only hide a bug upstream.
    if isinstance(value, bool):
        raise MetricParseError(field, value, "expected a number, got a boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MetricParseError(field, value, "expected a finite number")
        # str() gives the shortest text that round-trips, so 12.3 becomes Decimal("12.3"),
        # not Decimal(12.3) = 12.300000000000000710542735760100185871124267578125.
        return Decimal(str(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise MetricParseError(field, value, "expected a finite number")
        return value
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_TEXT.fullmatch(text):
            raise MetricParseError(field, value, "expected a decimal number such as '12.30'")
        return Decimal(text)
    raise MetricParseError(field, value, f"expected a string or a number, got {type(value).__name__}")


def parse_money(value: object, *, field: str) -> Decimal | None:
    """An amount of money in the account currency, exactly; ``None`` when TikTok marks it missing."""
    if _is_missing(value):
        return None
    amount = _exact_decimal(value, field=field)
    if amount < 0:
        raise MetricParseError(field, value, "an amount reported by TikTok cannot be negative")
    # Magnitude first: then quantize (to 21 digits at most) cannot exceed Decimal's precision.
    if amount >= MAX_MONEY or amount != amount.quantize(_MONEY_QUANTUM):
        raise MetricParseError(
            field, value, f"not a plausible amount (below 10**15, at most {MAX_MONEY_PLACES} decimals)"
        )
    return amount


def parse_count(value: object, *, field: str) -> int | None:
    """A whole, non-negative count (``"12"`` or ``"12.0"``); ``None`` when TikTok marks it missing."""
    if _is_missing(value):
        return None
    number = _exact_decimal(value, field=field)
    if number < 0:
        raise MetricParseError(field, value, "a count cannot be negative")
    if number != number.to_integral_value():
        raise MetricParseError(field, value, "a count must be a whole number")
    if number > MAX_COUNT:
        raise MetricParseError(field, value, f"the number is too large for a count (at most {MAX_COUNT})")
    try:
        return int(number)
    except (ValueError, OverflowError) as exc:  # absurdly long digit strings
        raise MetricParseError(field, value, "the number is too large") from exc


def money_as_written(amount: Decimal) -> Decimal:
    """An amount from the money column in TikTok's form: the column's six decimals without their
    trailing zeros, but at least two (``12.300000`` -> ``12.30``, ``0.125000`` -> ``0.125``), so
    ledger rows, results files and messages show the figures as TikTok wrote them. Same value."""
    cents = amount.quantize(_CENTS)
    return cents if cents == amount else amount.normalize()


def money_column(values: Sequence[object], *, field: str) -> pa.Array:
    """``values`` as a ``decimal128(21, 6)`` array, missing markers as null (rules: module docstring).

    Raises :class:`MetricParseError` for the first bad value, with ``row`` set to its index.
    """
    return _column(values, field, MONEY_TYPE, _PLAIN_MONEY_RE2, parse_money)


def count_column(values: Sequence[object], *, field: str) -> pa.Array:
    """``values`` as an ``int64`` array, missing markers as null (rules: module docstring).

    Raises :class:`MetricParseError` for the first bad value, with ``row`` set to its index.
    """
    return _column(values, field, COUNT_TYPE, _PLAIN_COUNT_RE2, parse_count)


def _column(
    values: Sequence[object],
    field: str,
    arrow_type: pa.DataType,
    plain_pattern: str,
    parse_one: Callable[..., object],
) -> pa.Array:
    try:
        texts = pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid, UnicodeEncodeError):
        # Non-strings (JSON numbers, booleans, objects) and half an emoji (no Arrow string can hold
        # it) are rare: left null here, they take the scalar path below.
        texts = pa.array(
            [value if type(value) is str and value.isascii() else None for value in values], pa.string()
        )
    plain = pc.fill_null(pc.match_substring_regex(texts, plain_pattern), False)
    missing = pc.fill_null(pc.is_in(texts, value_set=_EXACT_MISSING), False)
    settled = pc.or_(plain, missing)
    others = [
        index
        for index in pc.indices_nonzero(pc.invert(settled)).to_pylist()
        if values[index] is not None  # None is missing, and already null in `texts`
    ]
    converted = pc.cast(pc.if_else(plain, texts, None), arrow_type)
    if not others:
        return converted
    parsed = converted.to_pylist()
    for index in others:
        try:
            parsed[index] = parse_one(values[index], field=field)
        except MetricParseError as error:
            error.row = index
            raise
    return pa.array(parsed, arrow_type)


@dataclass(frozen=True, slots=True)
class MetricTotals:
    """Cost and counts of one ad-day, or of a correction to it (then figures may be negative).

    A restatement correction is ``current - already_counted``; ``is_zero()`` tells whether there
    is anything to send. A plain dataclass rather than a pydantic model: a year's backfill adds
    millions of these, and the type check below is all the validation it needs.
    """

    cost: Decimal
    impressions: int
    clicks: int
    conversions: int

    def __post_init__(self) -> None:
        # Only a Decimal is a cost here, so no float can slip in and lose cents.
        if not isinstance(self.cost, Decimal):
            raise TypeError(f"cost must be a Decimal, got {type(self.cost).__name__}")
        if type(self.impressions) is type(self.clicks) is type(self.conversions) is int:
            return  # the usual case, checked at once: a year's backfill makes millions of these
        for name in ("impressions", "clicks", "conversions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")

    def __reduce__(self) -> tuple[type[MetricTotals], tuple[Decimal, int, int, int]]:
        # Pickled by value (a planning process sends a day's totals to the uploader): dataclasses'
        # own state functions for slotted classes call fields() per object, far slower.
        return (MetricTotals, (self.cost, self.impressions, self.clicks, self.conversions))

    @classmethod
    def sum(cls, values: Iterable[MetricTotals]) -> MetricTotals:
        """The sum of ``values`` (zero for none), added field by field: one object, not one per term."""
        cost, impressions, clicks, conversions = Decimal(0), 0, 0, 0
        for value in values:
            cost += value.cost
            impressions += value.impressions
            clicks += value.clicks
            conversions += value.conversions
        return cls(cost, impressions, clicks, conversions)

    @classmethod
    def zero(cls) -> MetricTotals:
        return _ZERO  # immutable, so one is enough however often sums start from it

    def __add__(self, other: MetricTotals) -> MetricTotals:
        if not isinstance(other, MetricTotals):
            return NotImplemented
        return MetricTotals(
            cost=self.cost + other.cost,
            impressions=self.impressions + other.impressions,
            clicks=self.clicks + other.clicks,
            conversions=self.conversions + other.conversions,
        )

    def __sub__(self, other: MetricTotals) -> MetricTotals:
        if not isinstance(other, MetricTotals):
            return NotImplemented
        return MetricTotals(
            cost=self.cost - other.cost,
            impressions=self.impressions - other.impressions,
            clicks=self.clicks - other.clicks,
            conversions=self.conversions - other.conversions,
        )

    def as_record(self) -> dict[str, str | int]:
        """JSON-safe: the cost as its exact decimal string."""
        return {
            "cost": str(self.cost),
            "impressions": self.impressions,
            "clicks": self.clicks,
            "conversions": self.conversions,
        }

    def is_zero(self) -> bool:
        # Decimal("0.00") == 0, so a cost that changed by nothing counts as zero.
        return self.cost == 0 and self.impressions == 0 and self.clicks == 0 and self.conversions == 0


_ZERO = MetricTotals(cost=Decimal(0), impressions=0, clicks=0, conversions=0)
