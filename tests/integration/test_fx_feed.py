"""The FX feed client against the ECB emulator over real HTTP, and against local files: the rates as the
emulator published them, account-days on weekends, holidays and days not yet published, retries of
what may pass, and errors that name the feed and what to do."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import trustme
from tiktok_amp_emulators.ecb_server import DAILY_PATH, ECB_CURRENCIES, HIST_PATH, EcbEmulator, eurofxref_hist
from tiktok_amp_emulators.faults import Fault, FaultInjector

from tiktok_amp_assets.clients.fx_feed import FxFeedUnreachableError, checked_feed_location, read_fx_feed
from tiktok_amp_assets.clients.http import InsecureUrlError, RetryPolicy
from tiktok_amp_assets.core.fx_rates import (
    DayBeforeFeedError,
    FxFeedEmptyError,
    FxFeedFormatError,
    FxRates,
    NotYetPublished,
    UsedRate,
    convert,
    cross_rate,
    rate_for,
)

FAST = RetryPolicy(max_attempts=5, base_seconds=0.01, max_seconds=0.02)
# Easter 2024: Thursday 28 March, then Good Friday, the weekend and Easter Monday closed.
THURSDAY, GOOD_FRIDAY, SATURDAY, EASTER_MONDAY = date(2024, 3, 28), date(2024, 3, 29), date(2024, 3, 30), date(2024, 4, 1)  # fmt: skip


class Sleeps(list[float]):
    """Records the back-off waits instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def faults() -> FaultInjector:
    return FaultInjector()


@pytest.fixture
def ecb(faults: FaultInjector) -> Iterator[EcbEmulator]:
    with EcbEmulator(first_day=date(2024, 1, 2), newest_day=date(2024, 6, 28), faults=faults) as emulator:
        yield emulator


def read(url: str, sleeps: Sleeps | None = None, **options: object) -> FxRates:
    return read_fx_feed(url, retry=FAST, sleep=sleeps if sleeps is not None else Sleeps(), **options)  # type: ignore[arg-type]


def used(rates: FxRates, day: date, source: str, target: str) -> UsedRate:
    outcome = rate_for(rates, day, source, target)
    assert isinstance(outcome, UsedRate), outcome
    return outcome


def test_the_hist_file_is_read_once_exactly_as_the_emulator_published_it(ecb: EcbEmulator) -> None:
    url = ecb.url + HIST_PATH
    rates = read(url)
    assert rates.feed == url
    assert list(rates.days) == ecb.published_days() and len(rates.days) == 126
    assert all(
        rates.rates[day][currency] == ecb.rate(currency, day)
        for day in rates.days
        for currency in ECB_CURRENCIES
    )
    assert ecb.served[HIST_PATH] == 1  # one request for the whole history


def test_weekends_and_target_holidays_take_the_rate_of_the_working_day_before(ecb: EcbEmulator) -> None:
    rates = read(ecb.url + HIST_PATH)
    for day in (GOOD_FRIDAY, SATURDAY, EASTER_MONDAY):
        jpy_to_usd = used(rates, day, "JPY", "USD")
        assert jpy_to_usd.rate_date == THURSDAY
        assert jpy_to_usd.rate == cross_rate(ecb.rate("JPY", THURSDAY), ecb.rate("USD", THURSDAY))  # type: ignore[arg-type]
    friday, saturday, sunday = date(2024, 6, 7), date(2024, 6, 8), date(2024, 6, 9)
    assert (
        used(rates, saturday, "USD", "EUR").rate_date == used(rates, sunday, "GBP", "USD").rate_date == friday
    )
    # The day's converted spend is the sum of each ad's spend converted once.
    spends = [Decimal("103767"), Decimal("5"), Decimal("12345.5")]
    rate = used(rates, saturday, "JPY", "USD")
    assert sum(convert(spend, rate) for spend in spends) == sum(
        (spend * rate.rate).quantize(Decimal("0.01")) for spend in spends
    )


def test_a_day_the_feed_has_not_passed_waits_until_it_has(ecb: EcbEmulator) -> None:
    friday, saturday, monday = date(2024, 6, 28), date(2024, 6, 29), date(2024, 7, 1)
    assert rate_for(read(ecb.url + HIST_PATH), saturday, "JPY", "USD") == NotYetPublished(
        day=saturday, newest=friday, feed=ecb.url + HIST_PATH
    )
    ecb.publish_through(monday)  # Monday's rates are out at 16:00 CET: the weekend is passed
    rates = read(ecb.url + HIST_PATH)
    assert rates.newest == monday
    assert used(rates, saturday, "JPY", "USD").rate_date == friday


def test_the_daily_file_holds_one_day(ecb: EcbEmulator) -> None:
    rates = read(ecb.url + DAILY_PATH)
    assert rates.days == (date(2024, 6, 28),)
    assert used(rates, date(2024, 6, 28), "EUR", "USD").rate == ecb.rate("USD", date(2024, 6, 28))
    with pytest.raises(DayBeforeFeedError, match="eurofxref-daily.xml holds one day only"):
        rate_for(rates, date(2024, 6, 27), "EUR", "USD")


def test_server_errors_dropped_connections_and_cut_bodies_are_tried_again(
    ecb: EcbEmulator, faults: FaultInjector, caplog: pytest.LogCaptureFixture
) -> None:
    for fault in (Fault.SERVER_ERROR, Fault.TRUNCATED_BODY, Fault.HTTP_503, Fault.DROP_CONNECTION):
        faults.inject(fault)
    sleeps = Sleeps()
    with caplog.at_level(logging.WARNING):
        rates = read(ecb.url + HIST_PATH, sleeps)
    assert list(rates.days) == ecb.published_days()
    assert len(sleeps) == 4 and all(0.005 <= wait <= 0.02 for wait in sleeps)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 4 and all(ecb.url + HIST_PATH in warning for warning in warnings)
    assert "HTTP 500" in warnings[0] and "HTTP 503" in warnings[2]
    assert "ChunkedEncodingError" in warnings[1] and "ConnectionError" in warnings[3]


def test_a_feed_that_keeps_failing_names_itself_and_what_to_do(
    ecb: EcbEmulator, faults: FaultInjector
) -> None:
    faults.inject(Fault.SERVER_ERROR, count=10)
    url = ecb.url + HIST_PATH
    with pytest.raises(FxFeedUnreachableError) as raised:
        read(url)
    message = str(raised.value)
    assert f"the FX feed {url} could not be read in 5 attempts (last: HTTP 500)" in message
    assert "check that fx_rates_url is reachable" in message and "wait for a later run" in message
    assert ecb.served[HIST_PATH] == 5


def test_a_wrong_address_and_a_redirect_fail_at_once(ecb: EcbEmulator) -> None:
    wrong = ecb.url + "/stats/eurofxref/eurofxref-hist.zip"
    with pytest.raises(FxFeedUnreachableError, match=r"answered HTTP 404\. What to do: check fx_rates_url"):
        read(wrong)
    ecb.serve_instead(b"", status=302, headers={"Location": "https://mirror.example/eurofxref-hist.xml"})
    with pytest.raises(
        FxFeedUnreachableError,
        match=r"HTTP 302, a redirect to 'https://mirror\.example/eurofxref-hist\.xml' \(not followed\)",
    ):
        read(ecb.url + HIST_PATH)
    assert ecb.served[wrong.removeprefix(ecb.url)] == 1 and ecb.served[HIST_PATH] == 1  # no retries


def test_what_is_not_a_feed_of_rates_is_refused(ecb: EcbEmulator) -> None:
    url = ecb.url + HIST_PATH
    ecb.serve_instead(b"<html>\n<body><h1>Web filter</h1><p>This site is blocked</p></body>\n</html>")
    with pytest.raises(
        FxFeedFormatError, match=r"no <Cube> element \(it starts with '<html> <body><h1>Web filter"
    ):
        read(url)
    ecb.serve_instead(
        b'<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"><Cube></Cube></gesmes:Envelope>',
        content_type="text/xml",
    )
    with pytest.raises(FxFeedEmptyError, match=f"the FX feed {url} holds no rates"):
        read(url)
    ecb.serve_feed()
    with pytest.raises(FxFeedFormatError, match=r"is larger than 1,000 bytes"):
        read(url, max_bytes=1000)


def test_a_local_file_and_a_file_url_read_like_the_url(ecb: EcbEmulator, tmp_path: Path) -> None:
    over_http = read(ecb.url + HIST_PATH)
    path = tmp_path / "rates of the finance team.xml"
    path.write_bytes(eurofxref_hist(ecb.published_days(), tuple(ECB_CURRENCIES)))  # what the emulator serves
    for location in (str(path), path.as_uri()):
        from_file = read(location)
        assert from_file.feed == location
        assert from_file.days == over_http.days and dict(from_file.rates) == dict(over_http.rates)
    assert ecb.served[HIST_PATH] == 1


def test_a_file_of_ones_own_carries_what_the_ecb_lacks(tmp_path: Path) -> None:
    path = tmp_path / "rates.xml"
    path.write_text(
        "<Envelope><Cube>\n"
        "  <Cube time='2024-06-28'><Cube currency='USD' rate='1.0705'/><Cube currency='VND' rate='27237'/>"
        "<Cube currency='TWD' rate='34.83'/><Cube currency='AED' rate='3.9314'/></Cube>\n"
        "  <Cube time='2024-07-01'><Cube currency='USD' rate='1.0745'/><Cube currency='VND' rate='27341'/></Cube>\n"
        "</Cube></Envelope>\n"
    )
    rates = read(str(path))
    vnd = used(rates, date(2024, 6, 30), "VND", "USD")
    assert (vnd.rate_date, vnd.rate) == (date(2024, 6, 28), cross_rate(Decimal(27237), Decimal("1.0705")))
    assert convert(Decimal("25000000"), vnd) == Decimal("982.58")  # 982.5789..., to cents


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "rates.xml"
    with pytest.raises(
        FxFeedUnreachableError, match=f"there is no file {missing}. What to do: check fx_rates_url"
    ):
        read(str(missing))
    with pytest.raises(FxFeedUnreachableError, match="could not be read"):
        read(str(tmp_path))  # a folder


@pytest.mark.parametrize(
    ("location", "refusal"),
    [("http://rates.example.com/eurofxref-hist.xml", InsecureUrlError),
     ("https://rates.example.com/eurofxref-hist.xml?token=1", InsecureUrlError),
     ("https://user:secret@rates.example.com/hist.xml", InsecureUrlError),
     ("ftp://rates.example.com/hist.xml", ValueError), ("  ", ValueError)],
)  # fmt: skip
def test_locations_are_checked_before_any_request(location: str, refusal: type[Exception]) -> None:
    with pytest.raises(refusal, match="fx_rates_url"):
        checked_feed_location(location)
    with pytest.raises(refusal):
        read(location)


def test_an_untrusted_certificate_is_named_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with EcbEmulator(first_day=date(2024, 6, 3), newest_day=date(2024, 6, 7), tls=context) as ecb:
        url = ecb.url + HIST_PATH
        assert url.startswith("https://127.0.0.1:")
        with pytest.raises(
            FxFeedUnreachableError, match="TLS certificate could not be verified.*REQUESTS_CA_BUNDLE"
        ):
            read(url)
        assert ecb.served[HIST_PATH] == 0  # not tried again: no retry cures a certificate
        bundle = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        assert len(read(url).days) == 5
