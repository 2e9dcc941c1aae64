"""A local emulator of the European Central Bank's euro foreign exchange reference rates feed.

It serves ``/stats/eurofxref/eurofxref-hist.xml`` (every published day, newest first) and
``/stats/eurofxref/eurofxref-daily.xml`` (the newest day) for a date range, with deterministic
rates of the currencies the ECB publishes. It is a second reading of the ECB's pages, independent
of the product: it imports nothing from ``tiktok_amp_assets``. What it reproduces, and where from:

- The rates are "usually updated around 16:00 CET on every working day, except on TARGET closing
  days" (ECB, Euro foreign exchange reference rates,
  https://www.ecb.europa.eu/stats/policy_and_exchange_rates/euro_reference_exchange_rates/html/index.en.html):
  no day on Saturdays, Sundays and TARGET closing days, which are, "from 2002 until further notice",
  New Year's Day, Good Friday, Easter Monday, 1 May, Christmas Day and 26 December (ECB press
  release "Long-term calendar for TARGET closing days", 14 December 2000,
  https://www.ecb.europa.eu/press/pr/date/2000/html/pr001214_4.en.html). The calendars of 1999 to
  2001 differed a little (press releases of 3 September 1998 and 15 July 1999); the emulator applies
  the long-term one to every year. Easter is the Western (Gregorian) one: "Catholic/Protestant".
- The newest day is a setting (``newest_day``, ``publish_through``): a day after it is not
  published yet, as today is before 16:00 CET.
- The file's shape: a ``gesmes:Envelope`` in the ``gesmes`` and ``eurofxref`` namespaces, a
  ``Cube`` holding one ``Cube time="YYYY-MM-DD"`` per day holding one ``Cube currency=".." rate=".."``
  per currency: units of the currency per euro. The hist file writes double quotes and drops
  trailing zeros (``rate="1.225"``); the daily file writes single quotes and keeps them
  (``rate='1.2250'``). Sources: a cut of the real hist file in chrisberkhout/pricehist
  (``tests/pricehist/sources/test_ecb/eurofxref-hist-partial.xml``); the daily file in
  dialogplay/tool-directory (``integrations/ecb_exchange_rate/README.md``) and in the ECB's own PHP
  example on the page above, which reads ``currency='...'``.
- The currencies: the 30 of the daily file of 28 June 2024 (that copy), each written with the
  decimals it had there and around the level it had; no VND, TWD or AED. BGN stays at 1.9558 (its
  currency board) and stops on 1 January 2026, when Bulgaria adopted the euro and the ECB removed
  the lev from its list (novinite.com, 16 December 2025, "ECB Removes Bulgarian Lev from Exchange
  Rate List Ahead of Euro Adoption"). Other currencies can be withdrawn from a day on
  (``withdrawn``), as the ECB "last published a EUR/RUB reference rate on 1 March 2022" (its notice,
  as quoted by Národná banka Slovenska, https://nbs.sk/en/statistics/exchange-rates/ecb-foreign-exchange-reference-rates/).

Failure knobs: a :class:`FaultInjector` (``SERVER_ERROR`` is an HTTP 500 page, ``RATE_LIMIT`` a
429; a 503 page, a dropped connection, a slow or truncated body come from the HTTP base), and
``serve_instead`` to answer with any other document (an HTML page, an empty envelope, a redirect).
"""

from __future__ import annotations

import hashlib
import math
import ssl
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from tiktok_amp_emulators.faults import Fault, FaultInjector
from tiktok_amp_emulators.http_server import EmulatorServer, Request, Response

HIST_PATH = "/stats/eurofxref/eurofxref-hist.xml"
DAILY_PATH = "/stats/eurofxref/eurofxref-daily.xml"
FIRST_DAY = date(1999, 1, 4)  # the hist file's oldest day

# Currency: (level on 28 June 2024, as the daily file wrote it). The decimals of the level are the
# decimals the ECB writes for that currency.
ECB_CURRENCIES: dict[str, str] = {
    "USD": "1.0705",
    "JPY": "171.94",
    "BGN": "1.9558",
    "CZK": "25.025",
    "DKK": "7.4575",
    "GBP": "0.84638",
    "HUF": "395.10",
    "PLN": "4.3090",
    "RON": "4.9773",
    "SEK": "11.3595",
    "CHF": "0.9634",
    "ISK": "148.90",
    "NOK": "11.3965",
    "TRY": "35.1868",
    "AUD": "1.6079",
    "BRL": "5.8915",
    "CAD": "1.4670",
    "CNY": "7.7748",
    "HKD": "8.3594",
    "IDR": "17487.21",
    "ILS": "4.0200",
    "INR": "89.2495",
    "KRW": "1474.86",
    "MXN": "19.5654",
    "MYR": "5.0501",
    "NZD": "1.7601",
    "PHP": "62.560",
    "SGD": "1.4513",
    "THB": "39.319",
    "ZAR": "19.4970",
}
_FIXED = {"BGN"}  # pegged to the euro: the same rate every day
# Currency -> the first day without its rate.
ECB_WITHDRAWN: dict[str, date] = {"BGN": date(2026, 1, 1)}

_GESMES = "http://www.gesmes.org/xml/2002-08-01"
_EUROFXREF = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"
_ENVELOPE_START = (
    '<?xml version="1.0" encoding="UTF-8"?>',
    f'<gesmes:Envelope xmlns:gesmes="{_GESMES}" xmlns="{_EUROFXREF}">',
    "\t<gesmes:subject>Reference rates</gesmes:subject>",
    "\t<gesmes:Sender>",
    "\t\t<gesmes:name>European Central Bank</gesmes:name>",
    "\t</gesmes:Sender>",
    "\t<Cube>",
)


def easter_sunday(year: int) -> date:
    """Western Easter (the anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    m = (32 + 2 * e + 2 * i - h - k) % 7
    n = (a + 11 * h + 22 * m) // 451
    month, day = divmod(h + m - 7 * n + 114, 31)
    return date(year, month, day + 1)


def target_closing_days(year: int) -> frozenset[date]:
    """TARGET's closing days of ``year`` besides weekends (the long-term calendar)."""
    easter = easter_sunday(year)
    return frozenset(
        {
            date(year, 1, 1),
            easter - timedelta(days=2),  # Good Friday
            easter + timedelta(days=1),  # Easter Monday
            date(year, 5, 1),
            date(year, 12, 25),
            date(year, 12, 26),
        }
    )


def is_publication_day(day: date) -> bool:
    """Whether the ECB publishes rates on ``day``: a TARGET working day."""
    return day.weekday() < 5 and day not in target_closing_days(day.year)


def publication_days(first: date, last: date) -> Iterator[date]:
    """The days from ``first`` to ``last`` (both included) that have rates, oldest first."""
    day = first
    while day <= last:
        if is_publication_day(day):
            yield day
        day += timedelta(days=1)


def ecb_rate(currency: str, day: date, *, seed: int = 0, level: str | None = None) -> Decimal:
    """The emulator's rate of ``currency`` on ``day``: deterministic, near ``level`` (default: the
    currency's 2024 level), a yearly swing and a daily wobble, written with the level's decimals."""
    written = level or ECB_CURRENCIES[currency]
    base = Decimal(written)
    if currency in _FIXED:
        return base
    digest = hashlib.blake2b(f"{seed}:{currency}:{day.isoformat()}".encode(), digest_size=8).digest()
    wobble = int.from_bytes(digest, "big") / 2**64 - 0.5  # -0.5 .. 0.5
    phase = int.from_bytes(hashlib.blake2b(f"{seed}:{currency}".encode(), digest_size=2).digest(), "big")
    swing = math.sin(2 * math.pi * (day.toordinal() + phase) / 365.25)
    value = float(base) * (1 + 0.06 * swing + 0.008 * wobble)
    return Decimal(repr(value)).quantize(
        Decimal(1).scaleb(base.as_tuple().exponent), rounding=ROUND_HALF_EVEN
    )


def _hist_rate_text(rate: Decimal) -> str:
    """As the hist file writes rates: no trailing zeros after the point ("1.225", "155.5", "90.8")."""
    text = format(rate, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def eurofxref_hist(
    days: Sequence[date],
    currencies: Sequence[str],
    *,
    seed: int = 0,
    withdrawn: Mapping[str, date] | None = None,
) -> bytes:
    """``eurofxref-hist.xml`` for ``days`` (any order: written newest first). ``withdrawn``: the
    currencies that stop, and from which day (default: the ECB's, :data:`ECB_WITHDRAWN`)."""
    withdrawn = ECB_WITHDRAWN if withdrawn is None else withdrawn
    lines = [*_ENVELOPE_START]
    for day in sorted(days, reverse=True):
        rates = "".join(
            f'<Cube currency="{currency}" rate="{_hist_rate_text(ecb_rate(currency, day, seed=seed))}"/>'
            for currency in currencies
            if currency not in withdrawn or day < withdrawn[currency]
        )
        lines.append(f'\t\t<Cube time="{day.isoformat()}">{rates}</Cube>')
    lines += ["\t</Cube>", "</gesmes:Envelope>", ""]
    return "\n".join(lines).encode("utf-8")


def eurofxref_daily(
    day: date, currencies: Sequence[str], *, seed: int = 0, withdrawn: Mapping[str, date] | None = None
) -> bytes:
    """``eurofxref-daily.xml`` of ``day``: single quotes, tabs, trailing zeros kept."""
    withdrawn = ECB_WITHDRAWN if withdrawn is None else withdrawn
    lines = [*_ENVELOPE_START, f"\t\t<Cube time='{day.isoformat()}'>"]
    for currency in currencies:
        if currency not in withdrawn or day < withdrawn[currency]:
            rate = format(ecb_rate(currency, day, seed=seed), "f")
            lines.append(f"\t\t\t<Cube currency='{currency}' rate='{rate}'/>")
    lines += ["\t\t</Cube>", "\t</Cube>", "</gesmes:Envelope>", ""]
    return "\n".join(lines).encode("utf-8")


class EcbEmulator(EmulatorServer):
    """The ECB's rates feed from ``first_day`` to ``newest_day`` over real HTTP on 127.0.0.1."""

    def __init__(
        self,
        *,
        first_day: date = FIRST_DAY,
        newest_day: date,
        currencies: Sequence[str] = tuple(ECB_CURRENCIES),
        withdrawn: Mapping[str, date] | None = None,
        seed: int = 0,
        faults: FaultInjector | None = None,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults, tls=tls)
        unknown = set(currencies) - set(ECB_CURRENCIES)
        if unknown:
            raise ValueError(f"the ECB publishes no rates for {sorted(unknown)}")
        self.first_day = first_day
        self.currencies = tuple(currencies)
        self.withdrawn = {**ECB_WITHDRAWN, **(withdrawn or {})}
        self.seed = seed
        self._newest_day = newest_day
        self._instead: Response | None = None
        self._bodies: dict[tuple[str, date], bytes] = {}
        # path -> requests answered here, HTTP 500 and 429 faults included (a 503 page, a dropped
        # connection or a cut body are the HTTP base's: ``faults.injected`` counts those)
        self.served: Counter[str] = Counter()

    @property
    def newest_day(self) -> date:
        with self.lock:
            return self._newest_day

    def publish_through(self, day: date) -> None:
        """Make ``day`` the newest day the feed may hold (as 16:00 CET passes)."""
        with self.lock:
            self._newest_day = day

    def published_days(self) -> list[date]:
        """The days the feed holds now, oldest first."""
        return list(publication_days(self.first_day, self.newest_day))

    def rate(self, currency: str, day: date) -> Decimal | None:
        """The rate the feed holds for ``currency`` on ``day`` (None: not published that day)."""
        if currency not in self.currencies or not self.first_day <= day <= self.newest_day:
            return None
        if not is_publication_day(day):
            return None
        if currency in self.withdrawn and day >= self.withdrawn[currency]:
            return None
        return ecb_rate(currency, day, seed=self.seed)

    def serve_instead(
        self,
        body: bytes,
        *,
        status: int = 200,
        content_type: str = "text/html",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer every feed request with this document instead (a proxy's page, a redirect...)."""
        with self.lock:
            self._instead = Response(status, body, content_type=content_type, headers=dict(headers or {}))

    def serve_feed(self) -> None:
        """Back to serving the feed."""
        with self.lock:
            self._instead = None

    def handle(self, request: Request, fault: Fault | None) -> Response:
        with self.lock:
            self.served[request.path] += 1
            if request.method != "GET":
                return Response(
                    405, b"<html><body>405 Method Not Allowed</body></html>", content_type="text/html"
                )
            if fault is Fault.SERVER_ERROR:
                return Response(
                    500, b"<html><body>500 Internal Server Error</body></html>", content_type="text/html"
                )
            if fault is Fault.RATE_LIMIT:
                return Response(
                    429, b"<html><body>429 Too Many Requests</body></html>", content_type="text/html"
                )
            if request.path not in (HIST_PATH, DAILY_PATH):
                return Response(404, b"<html><body>404 Not Found</body></html>", content_type="text/html")
            if self._instead is not None:
                return self._instead
            return Response(200, self._body(request.path), content_type="text/xml")

    def _body(self, path: str) -> bytes:
        key = (path, self._newest_day)
        if key not in self._bodies:
            days = list(publication_days(self.first_day, self._newest_day))
            if path == HIST_PATH:
                body = eurofxref_hist(days, self.currencies, seed=self.seed, withdrawn=self.withdrawn)
            elif days:
                body = eurofxref_daily(days[-1], self.currencies, seed=self.seed, withdrawn=self.withdrawn)
            else:
                body = eurofxref_hist([], self.currencies)
            self._bodies = {key: body} | {k: v for k, v in self._bodies.items() if k[1] == self._newest_day}
        return self._bodies[key]
