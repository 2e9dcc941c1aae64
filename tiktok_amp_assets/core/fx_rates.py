"""Euro reference rates: a feed in the ECB's ``eurofxref`` XML read, looked up and applied to money.

Plain functions over plain data (``clients/fx_feed.py`` fetches the feed). The source of rates is
the European Central Bank's euro foreign exchange reference rates ("usually updated around 16:00
CET on every working day, except on TARGET closing days":
https://www.ecb.europa.eu/stats/policy_and_exchange_rates/euro_reference_exchange_rates/html/index.en.html),
whose XML files ``eurofxref-daily.xml`` (the latest day) and ``eurofxref-hist.xml`` (every day since
4 January 1999) have this shape (a cut of the real hist file: chrisberkhout/pricehist,
``tests/pricehist/sources/test_ecb/eurofxref-hist-partial.xml``; the daily file as served:
dialogplay/tool-directory, ``integrations/ecb_exchange_rate/README.md``)::

    <gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"
                     xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
      <gesmes:subject>Reference rates</gesmes:subject>
      <gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>
      <Cube>
        <Cube time="2021-01-08">
          <Cube currency="USD" rate="1.225"/>
          <Cube currency="JPY" rate="127.26"/>

A rate is units of the currency for one euro (the ECB's own PHP example prints ``1€=<rate>
<currency>``). The hist file lists the newest day first and writes ``rate="1.225"`` where the daily
file writes ``rate='1.2250'``; a currency may stop being published (the rouble after 1 March 2022,
the lev when Bulgaria adopted the euro on 1 January 2026).

Read tolerantly: single or double quotes, any whitespace and layout, days and currencies in any
order, with or without the namespaces (or other prefixes), elements and attributes the format does
not have are ignored, a rate written ``N/A`` or empty is a rate not published that day (the ECB's
CSV writes ``N/A``), lower-case codes are upper-cased. What cannot be read as rates is refused
whole, naming the feed, the line and what to do: a feed whose numbers might be wrong must not
convert anyone's money.

Lookups follow the issue's rule: the rate of an account-day is the one published for that day or,
on a day without one that the feed has passed (weekends, TARGET holidays), the latest published
before it; a day after the feed's newest is :class:`NotYetPublished` (the account-day waits for a
later run: whether it will get a rate of its own is not known yet). Cross rates go through the
euro, and an amount is converted with ``round(amount × rate)``, once, half-even, to the minor unit
of the reporting currency.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation, Overflow
from functools import cached_property
from typing import Annotated, BinaryIO, Self
from xml.parsers import expat

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from tiktok_amp_assets.core.currencies import minor_units

ECB_HIST_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist.xml"
ECB_DAILY_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"
EURO = "EUR"

# Significant digits of a cross rate (a quotient of two published rates, which rarely terminates).
# ECB rates carry at most 7 significant digits and TikTok amounts at most 6 decimals, so 28 digits
# (a relative error below 5e-28) move a converted amount of up to 10^15 minor units (ten trillion
# dollars in cents) by less than 5e-13 of a minor unit: rounding it to the minor unit gives the same
# result as rounding the exact quotient except within that distance of a half unit. Fewer digits
# (the 4 to 6 a bank quotes) would shift cents on large amounts. The context is explicit, not
# Decimal's global one, which any library may change.
CROSS_RATE_DIGITS = 28
_CROSS = Context(prec=CROSS_RATE_DIGITS, rounding=ROUND_HALF_EVEN)
# A product of an amount and a rate is computed exactly (a rate has at most 28 digits and an amount
# far fewer than the rest), then rounded once: a product that would need more digits raises
# (Inexact is trapped) rather than be rounded twice.
_EXACT = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Inexact, Overflow])
_ROUND = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, Overflow])

# Written where a currency has no rate that day (the ECB's CSV writes N/A).
_NOT_PUBLISHED = frozenset({"", "N/A", "NA", "-"})
_CURRENCY = re.compile(r"[A-Z]{3}")
_CHUNK_BYTES = 1 << 16
_SNIPPET_CHARS = 60

CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


# --------------------------------------------------------------------------------------- errors


class FxFeedError(RuntimeError):
    """A feed of rates that cannot be used: its message names the feed and what to do."""


class FxFeedFormatError(FxFeedError):
    """The document is not daily rates in the ECB's ``eurofxref`` XML format."""


class FxFeedEmptyError(FxFeedFormatError):
    """The document is in the format but holds no rates."""


class FxRateError(LookupError):
    """No usable rate for an account-day: that account-day fails, named, and the others go on."""


class CurrencyNotInFeedError(FxRateError):
    """The feed carries no rate of ``currency`` for the day (never, or not since ``last_published``)."""

    def __init__(
        self, *, currency: str, role: str, day: date, feed: str, last_published: date | None
    ) -> None:
        self.currency = currency
        self.role = role
        self.day = day
        self.feed = feed
        self.last_published = last_published
        if last_published is None:
            missing = f"carries no {currency} rates at all"
        else:
            missing = (
                f"has no {currency} rate for {day.isoformat()} (its last was of {last_published.isoformat()})"
            )
        super().__init__(
            f"the FX feed {feed} {missing}, which the {role} {currency} needs. What to do: point "
            f"fx_rates_url at a file of daily rates in the ECB's eurofxref XML format that carries "
            f"{currency} (finance teams keep their own; the ECB publishes none for VND, TWD or AED, "
            "for example), or leave reporting_currency unset to import this account's cost in its own "
            "currency"
        )


class DayBeforeFeedError(FxRateError):
    """The day is older than the feed's oldest day: no rate was published on or before it."""

    def __init__(self, *, day: date, oldest: date, feed: str) -> None:
        self.day = day
        self.oldest = oldest
        self.feed = feed
        super().__init__(
            f"the FX feed {feed} starts on {oldest.isoformat()}: it has no rate for {day.isoformat()}. "
            f"What to do: point fx_rates_url at a feed that goes back that far (the ECB's "
            f"eurofxref-hist.xml starts on 1999-01-04; eurofxref-daily.xml holds one day only)"
        )


# ------------------------------------------------------------------------------------ the rates


@dataclass(frozen=True)
class FxRates:
    """A feed's rates: for each day it published, units of each currency per euro, exact as written.

    ``days`` is ascending and names the days of ``rates``, each with at least one rate; neither is to
    be changed. Plain dicts (not read-only proxies), so that it pickles across processes.
    """

    feed: str  # the URL or file name it was read from
    days: tuple[date, ...]
    rates: Mapping[date, Mapping[str, Decimal]] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.days or list(self.days) != sorted(self.rates) or not all(self.rates.values()):
            raise ValueError("FxRates needs days in ascending order, each with its rates, and no other")

    @property
    def oldest(self) -> date:
        return self.days[0]

    @property
    def newest(self) -> date:
        return self.days[-1]

    @cached_property
    def currencies(self) -> frozenset[str]:
        """Every currency the feed has a rate of, on any day (the euro not included)."""
        return frozenset(code for day_rates in self.rates.values() for code in day_rates)

    def published_on_or_before(self, day: date) -> date | None:
        """The latest day the feed published that is not after ``day`` (None: ``day`` is older)."""
        index = bisect_right(self.days, day) - 1
        return self.days[index] if index >= 0 else None

    def last_published(self, currency: str, *, on_or_before: date) -> date | None:
        """The latest day not after ``on_or_before`` that has a rate of ``currency``."""
        for index in range(bisect_right(self.days, on_or_before) - 1, -1, -1):
            if currency in self.rates[self.days[index]]:
                return self.days[index]
        return None


def parse_eurofxref(document: bytes | BinaryIO, *, feed: str) -> FxRates:
    """The rates of an ``eurofxref`` XML document (bytes, or a binary file read in chunks).

    ``feed`` (the URL or file name) goes into the result and into every error message. Raises
    :class:`FxFeedFormatError` for a document that is not this format (or declares a DOCTYPE, which
    the format never does: refused rather than have entities expanded), and
    :class:`FxFeedEmptyError` for one without any rate.
    """
    reader = _Reader(feed)
    try:
        if isinstance(document, bytes | bytearray):
            reader.feed_bytes(bytes(document), final=True)
        else:
            while chunk := document.read(_CHUNK_BYTES):
                reader.feed_bytes(chunk, final=False)
            reader.feed_bytes(b"", final=True)
    except expat.ExpatError as error:
        if reader.bytes_read == 0 or not reader.snippet.strip():
            raise FxFeedEmptyError(f"the FX feed {feed} is empty (no bytes). {_WHAT_TO_DO}") from None
        raise reader.format_error(f"it is not well-formed XML ({error})") from None
    return reader.result()


_WHAT_TO_DO = (
    f"What to do: check fx_rates_url: it must name the ECB's eurofxref-hist.xml ({ECB_HIST_URL}), a "
    "copy of it, or a file of your own daily rates in that format"
)


class _Reader:
    """expat callbacks that collect rates as they stream by: no element tree is built, so memory holds
    the rates only, whatever the size of the document."""

    def __init__(self, feed: str) -> None:
        self.feed = feed
        self.by_day: dict[date, dict[str, Decimal]] = {}
        self.bytes_read = 0
        self.snippet = ""
        self._cubes: list[bool] = []  # for each open <Cube>: whether it is a day's
        self._day_rates: dict[str, Decimal] | None = None
        self._day: date | None = None
        self._saw_cube = False
        self._codes: dict[str, str] = {}  # as written -> the code
        self._parser = expat.ParserCreate()
        self._parser.buffer_text = True
        self._parser.StartElementHandler = self._start
        self._parser.EndElementHandler = self._end
        self._parser.StartDoctypeDeclHandler = self._doctype

    def feed_bytes(self, data: bytes, *, final: bool) -> None:
        if len(self.snippet) < _SNIPPET_CHARS and data:
            self.snippet += data[: _SNIPPET_CHARS * 4].decode("utf-8", "replace")[
                : _SNIPPET_CHARS - len(self.snippet)
            ]
        self.bytes_read += len(data)
        self._parser.Parse(data, final)

    def format_error(self, detail: str) -> FxFeedFormatError:
        starts = " ".join(self.snippet.split())
        return FxFeedFormatError(
            f"the FX feed {self.feed} is not daily rates in the ECB's eurofxref XML format: {detail} "
            f"(it starts with {starts!r}). {_WHAT_TO_DO}"
        )

    def _where(self) -> str:
        day = f"{self._day.isoformat()}, " if self._day is not None else ""
        return f"{day}line {self._parser.CurrentLineNumber}"

    def _doctype(self, name: str, *_: object) -> None:
        raise self.format_error(f"it declares a DOCTYPE ({name}), which the format never has")

    # The handlers run once per element (200,000 in the hist file): the common path is kept short,
    # and the text of an error is only made when one is raised.

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        if name != "Cube" and not name.endswith(":Cube"):
            return
        self._saw_cube = True
        time = attributes.get("time")
        self._cubes.append(time is not None)
        if time is not None:
            self._open_day(time)
            return
        currency = attributes.get("currency")
        if currency is None:
            return  # the Cube around the days
        if self._day_rates is None:
            raise self.format_error(
                f"a rate of {currency.strip()!r} outside any <Cube time=...> ({self._where()})"
            )
        self._add_rate(
            self._day_rates, self._codes.get(currency) or self._code(currency), attributes.get("rate")
        )

    def _end(self, name: str) -> None:
        if (name == "Cube" or name.endswith(":Cube")) and self._cubes.pop():
            self._day_rates, self._day = None, None

    def _open_day(self, text: str) -> None:
        try:
            self._day = date.fromisoformat(text.strip())
        except ValueError:
            raise self.format_error(f"time={text!r} is not a date YYYY-MM-DD ({self._where()})") from None
        # A day written twice (two files joined) gets the rates of both.
        self._day_rates = self.by_day.setdefault(self._day, {})

    def _code(self, text: str) -> str:
        """The code written ``text``, checked once; every rate of it then shares one string."""
        code = text.strip().upper()
        if not _CURRENCY.fullmatch(code):
            raise self.format_error(f"currency={text!r} is not an ISO 4217 code ({self._where()})")
        self._codes[text] = self._codes.setdefault(code, code)
        return self._codes[text]

    def _add_rate(self, day_rates: dict[str, Decimal], code: str, text: str | None) -> None:
        try:
            rate = Decimal(text)  # type: ignore[arg-type]  # None: caught below
            usable = rate.is_finite() and rate > 0
        except (InvalidOperation, TypeError):
            usable = False
        if not usable:
            if text is None:
                raise self.format_error(f"the {code} rate has no rate attribute ({self._where()})")
            if text.strip().upper() in _NOT_PUBLISHED:
                return
            raise self.format_error(
                f"the {code} rate {text!r} is not a positive decimal number ({self._where()})"
            )
        if code == EURO:
            if rate != 1:
                raise self.format_error(f"the rate of the euro itself is {text!r}, not 1 ({self._where()})")
            return
        known = day_rates.setdefault(code, rate)
        if known is not rate and known != rate:
            raise self.format_error(f"{code} has two rates, {known} and {rate} ({self._where()})")

    def result(self) -> FxRates:
        if not self._saw_cube:
            raise self.format_error("it has no <Cube> element")
        by_day = {day: rates for day, rates in self.by_day.items() if rates}
        if not by_day:
            raise FxFeedEmptyError(
                f"the FX feed {self.feed} holds no rates: it has the ECB's format but no "
                f"<Cube time=...> with a rate in it. {_WHAT_TO_DO}"
            )
        return FxRates(feed=self.feed, days=tuple(sorted(by_day)), rates=by_day)


# ------------------------------------------------------------------------------------- lookups


class UsedRate(BaseModel):
    """A rate as used for an account-day, kept so that a restated day is corrected with the same rate.

    ``rate`` is units of ``to_currency`` (the reporting currency) per unit of ``from_currency``
    (the account's), the feed's rate of ``rate_date``: ``day`` itself or the latest day the feed
    published before it. Between one currency and itself the rate is exactly 1, no feed needed, and
    ``rate_date`` is ``day``. Serialized as JSON, the rate is a string: the round trip is exact.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    day: date
    from_currency: CurrencyCode
    to_currency: CurrencyCode
    rate: Decimal = Field(gt=0, allow_inf_nan=False)
    rate_date: date
    feed: str

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.rate_date > self.day:
            raise ValueError(f"rate_date {self.rate_date} is after the day {self.day} it is used for")
        if self.from_currency == self.to_currency and self.rate != 1:
            raise ValueError(f"the rate from {self.from_currency} to itself must be 1, got {self.rate}")
        return self


@dataclass(frozen=True)
class NotYetPublished:
    """The feed has not passed ``day`` yet: the account-day waits for a run after its publication."""

    day: date
    newest: date  # the feed's newest day
    feed: str

    @property
    def message(self) -> str:
        return (
            f"the rates of {self.day.isoformat()} are not published yet (the newest day of the FX feed "
            f"{self.feed} is {self.newest.isoformat()}; the ECB publishes around 16:00 CET on TARGET "
            "working days, and a weekend or holiday takes the rate of the working day before it once the "
            "next one is out): this account-day waits for the next run"
        )


def currency_code(text: str) -> str:
    """``text`` as an ISO 4217 code (trimmed, upper case), or ValueError."""
    code = text.strip().upper()
    if not _CURRENCY.fullmatch(code):
        raise ValueError(f"{text!r} is not an ISO 4217 currency code (three letters, such as USD)")
    return code


def rate_for(rates: FxRates, day: date, from_currency: str, to_currency: str) -> UsedRate | NotYetPublished:
    """The rate that converts ``from_currency`` (an account's) into ``to_currency`` (the reporting
    currency) for the account-day ``day``, or :class:`NotYetPublished`.

    Raises :class:`CurrencyNotInFeedError` when either currency (the euro aside) has no rate on the
    day the lookup lands on (checked first for a currency the feed never carries, so that the account
    fails now rather than wait), and :class:`DayBeforeFeedError` for a day older than the feed.
    """
    source, target = currency_code(from_currency), currency_code(to_currency)
    if source == target:
        return UsedRate(
            day=day, from_currency=source, to_currency=target, rate=Decimal(1), rate_date=day, feed=rates.feed
        )
    for code, role in ((source, "account currency"), (target, "reporting currency")):
        if code != EURO and code not in rates.currencies:
            raise CurrencyNotInFeedError(
                currency=code, role=role, day=day, feed=rates.feed, last_published=None
            )
    if day > rates.newest:
        return NotYetPublished(day=day, newest=rates.newest, feed=rates.feed)
    published = rates.published_on_or_before(day)
    if published is None:
        raise DayBeforeFeedError(day=day, oldest=rates.oldest, feed=rates.feed)
    per_euro = rates.rates[published]
    for code, role in ((source, "account currency"), (target, "reporting currency")):
        if code != EURO and code not in per_euro:
            last = rates.last_published(code, on_or_before=published)
            raise CurrencyNotInFeedError(
                currency=code, role=role, day=day, feed=rates.feed, last_published=last
            )
    rate = cross_rate(
        Decimal(1) if source == EURO else per_euro[source], Decimal(1) if target == EURO else per_euro[target]
    )
    return UsedRate(
        day=day, from_currency=source, to_currency=target, rate=rate, rate_date=published, feed=rates.feed
    )


def cross_rate(from_per_euro: Decimal, to_per_euro: Decimal) -> Decimal:
    """Units of the second currency per unit of the first, given each one's units per euro: their
    quotient to :data:`CROSS_RATE_DIGITS` significant digits, half-even (exact when it terminates)."""
    return _CROSS.divide(to_per_euro, from_per_euro)


def convert(amount: Decimal, used: UsedRate) -> Decimal:
    """``amount`` (in ``used.from_currency``) in ``used.to_currency``: ``amount × rate``, computed
    exactly and rounded once, half-even, to the reporting currency's minor unit (ISO 4217)."""
    if not amount.is_finite():
        raise ValueError(f"cannot convert {amount}: not a finite amount")
    try:
        product = _EXACT.multiply(amount, used.rate)
    except Inexact:
        raise ValueError(
            f"cannot convert {amount} at {used.rate}: the product has over {_EXACT.prec} digits"
        ) from None
    converted = product.quantize(Decimal(1).scaleb(-minor_units(used.to_currency)), context=_ROUND)
    return converted.copy_abs() if converted.is_zero() else converted  # no "-0.00"
