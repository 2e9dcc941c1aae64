"""The ECB rates emulator over real HTTP, read with plain ``requests`` and the standard library's XML
parser (not the product's): the TARGET calendar, the two files' shapes, and its failure knobs."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from decimal import Decimal

import pytest
import requests
from tiktok_amp_emulators.ecb_server import (
    DAILY_PATH,
    ECB_CURRENCIES,
    HIST_PATH,
    EcbEmulator,
    easter_sunday,
)
from tiktok_amp_emulators.faults import Fault, FaultInjector

NAMESPACES = {
    "gesmes": "http://www.gesmes.org/xml/2002-08-01",
    "ecb": "http://www.ecb.int/vocabulary/2002-08-01/eurofxref",
}
# TARGET closing days on weekdays in 2024 (ECB press release of 14 December 2000: New Year's Day,
# Good Friday, Easter Monday, 1 May, Christmas Day, 26 December).
CLOSED_2024 = {date(2024, 1, 1), date(2024, 3, 29), date(2024, 4, 1), date(2024, 5, 1), date(2024, 12, 25), date(2024, 12, 26)}  # fmt: skip


def days_and_rates(body: bytes) -> dict[date, dict[str, str]]:
    root = ET.fromstring(body)
    return {
        date.fromisoformat(day.attrib["time"]): {rate.attrib["currency"]: rate.attrib["rate"] for rate in day}
        for day in root.findall("ecb:Cube/ecb:Cube", NAMESPACES)
    }


def get(emulator: EcbEmulator, path: str) -> requests.Response:
    return requests.get(emulator.url + path, timeout=10)


@pytest.mark.parametrize(
    ("year", "sunday"),
    [(2000, date(2000, 4, 23)), (2019, date(2019, 4, 21)), (2024, date(2024, 3, 31)), (2025, date(2025, 4, 20)),
     (2038, date(2038, 4, 25))],
)  # fmt: skip
def test_easter_is_the_western_one(year: int, sunday: date) -> None:
    assert easter_sunday(year) == sunday


def test_the_hist_file_has_every_target_working_day_newest_first() -> None:
    with EcbEmulator(first_day=date(2024, 1, 1), newest_day=date(2024, 12, 31)) as ecb:
        response = get(ecb, HIST_PATH)
    assert response.status_code == 200 and response.headers["Content-Type"] == "text/xml"
    text = response.text
    days = [date.fromisoformat(day) for day in re.findall(r'<Cube time="([0-9-]+)">', text)]
    assert days == sorted(days, reverse=True)
    weekdays = {date(2024, 1, 1) + timedelta(days=n) for n in range(366)}
    weekdays = {day for day in weekdays if day.weekday() < 5}
    assert set(days) == weekdays - CLOSED_2024 and len(days) == 256
    rates = days_and_rates(response.content)
    assert all(set(day_rates) == set(ECB_CURRENCIES) for day_rates in rates.values())
    assert not {"VND", "TWD", "AED", "EUR"} & set(ECB_CURRENCIES) and len(ECB_CURRENCIES) == 30
    # As the real hist file writes them: double quotes, no trailing zeros after the point.
    assert "rate='" not in text and not re.search(r'rate="[0-9]*\.[0-9]*0"', text)
    assert {day_rates["BGN"] for day_rates in rates.values()} == {"1.9558"}


def test_the_daily_file_holds_the_newest_day_the_calendar_allows() -> None:
    with EcbEmulator(first_day=date(2024, 3, 1), newest_day=date(2024, 3, 28)) as ecb:
        assert list(days_and_rates(get(ecb, DAILY_PATH).content)) == [date(2024, 3, 28)]
        ecb.publish_through(date(2024, 4, 1))  # Good Friday and Easter Monday add nothing
        assert list(days_and_rates(get(ecb, DAILY_PATH).content)) == [date(2024, 3, 28)]
        ecb.publish_through(date(2024, 4, 2))
        body = get(ecb, DAILY_PATH).content
        assert list(days_and_rates(body)) == [date(2024, 4, 2)]
        assert ecb.published_days()[-3:] == [date(2024, 3, 27), date(2024, 3, 28), date(2024, 4, 2)]
    # Single quotes, and each currency with the decimals the ECB writes for it, trailing zeros kept.
    written = dict(re.findall(r"<Cube currency='([A-Z]{3})' rate='([0-9.]+)'/>", body.decode()))
    for currency, level in ECB_CURRENCIES.items():
        assert len(written[currency].partition(".")[2]) == len(level.partition(".")[2]), currency
        assert Decimal(written[currency]) == ecb.rate(currency, date(2024, 4, 2))


def test_rates_are_deterministic_and_a_withdrawn_currency_stops() -> None:
    newest = date(2024, 6, 7)
    with (
        EcbEmulator(first_day=date(2024, 6, 3), newest_day=newest) as one,
        EcbEmulator(
            first_day=date(2024, 6, 3), newest_day=newest, withdrawn={"ISK": date(2024, 6, 5)}
        ) as other,
    ):
        first, second = (
            days_and_rates(get(one, HIST_PATH).content),
            days_and_rates(get(other, HIST_PATH).content),
        )
    assert [("ISK" in second[day]) for day in sorted(second)] == [True, True, False, False, False]
    assert {day: {c: r for c, r in rates.items() if c != "ISK"} for day, rates in first.items()} == {
        day: {c: r for c, r in rates.items() if c != "ISK"} for day, rates in second.items()
    }
    assert other.rate("ISK", date(2024, 6, 5)) is None and other.rate("USD", date(2024, 6, 8)) is None
    assert len({rates["USD"] for rates in first.values()}) > 1  # it moves from day to day


def test_failure_knobs_and_other_documents() -> None:
    faults = FaultInjector()
    with EcbEmulator(first_day=date(2024, 6, 3), newest_day=date(2024, 6, 7), faults=faults) as ecb:
        for fault, status in ((Fault.SERVER_ERROR, 500), (Fault.HTTP_503, 503), (Fault.RATE_LIMIT, 429)):
            faults.inject(fault)
            assert get(ecb, HIST_PATH).status_code == status
        assert get(ecb, "/stats/eurofxref/eurofxref-hist.zip").status_code == 404
        assert requests.post(ecb.url + HIST_PATH, timeout=10).status_code == 405
        ecb.serve_instead(b"<html><body>Sign in to continue</body></html>")
        answer = get(ecb, HIST_PATH)
        assert (answer.status_code, answer.text) == (200, "<html><body>Sign in to continue</body></html>")
        ecb.serve_instead(b"", status=301, headers={"Location": "https://elsewhere.example/hist.xml"})
        moved = requests.get(ecb.url + HIST_PATH, timeout=10, allow_redirects=False)
        assert (moved.status_code, moved.headers["Location"]) == (301, "https://elsewhere.example/hist.xml")
        ecb.serve_feed()
        assert len(days_and_rates(get(ecb, HIST_PATH).content)) == 5
        # The 503 page is the HTTP base's: it never reached the emulator.
        assert (ecb.served[HIST_PATH], faults.injected[Fault.HTTP_503]) == (6, 1)


def test_the_lev_stops_when_bulgaria_adopts_the_euro() -> None:
    with EcbEmulator(first_day=date(2025, 12, 29), newest_day=date(2026, 1, 6)) as ecb:
        rates = days_and_rates(get(ecb, HIST_PATH).content)
    assert sorted(rates) == [date(2025, 12, 29), date(2025, 12, 30), date(2025, 12, 31), date(2026, 1, 2), date(2026, 1, 5), date(2026, 1, 6)]  # fmt: skip
    assert [len(rates[day]) for day in sorted(rates)] == [30, 30, 30, 29, 29, 29]
    assert "BGN" not in rates[date(2026, 1, 2)]
