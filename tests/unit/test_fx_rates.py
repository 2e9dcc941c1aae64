"""Euro reference rates: the ECB's XML read tolerantly and exactly, the rate of an account-day, cross
rates through the euro, and amounts rounded once, half-even, to the reporting currency's minor unit."""

from __future__ import annotations

import io
import pickle
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiktok_amp_assets.core.fx_rates import (
    CROSS_RATE_DIGITS,
    CurrencyNotInFeedError,
    DayBeforeFeedError,
    FxFeedEmptyError,
    FxFeedFormatError,
    FxRates,
    NotYetPublished,
    UsedRate,
    convert,
    cross_rate,
    parse_eurofxref,
    rate_for,
)

FEED = "https://mirror.example/eurofxref-hist.xml"
HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" '
    'xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">\n'
    "  <gesmes:subject>Reference rates</gesmes:subject>\n"
    "  <gesmes:Sender>\n    <gesmes:name>European Central Bank</gesmes:name>\n  </gesmes:Sender>\n"
)
# The shape of the real hist file (newest first, double quotes, no trailing zeros), around Easter
# 2024: Good Friday 29 March and Easter Monday 1 April are TARGET closing days.
HIST = HEAD + (
    "  <Cube>\n"
    '    <Cube time="2024-04-02"><Cube currency="USD" rate="1.0767"/><Cube currency="JPY" rate="163.22"/>'
    '<Cube currency="KWD" rate="0.3311"/></Cube>\n'
    '    <Cube time="2024-03-28"><Cube currency="USD" rate="1.0811"/><Cube currency="JPY" rate="163.45"/>'
    '<Cube currency="KWD" rate="0.3325"/></Cube>\n'
    '    <Cube time="2024-03-27"><Cube currency="USD" rate="1.0824"/><Cube currency="JPY" rate="163.9"/>'
    '<Cube currency="KWD" rate="0.333"/></Cube>\n'
    "  </Cube>\n</gesmes:Envelope>\n"
)
EXPECTED = {
    date(2024, 3, 27): {"USD": "1.0824", "JPY": "163.9", "KWD": "0.333"},
    date(2024, 3, 28): {"USD": "1.0811", "JPY": "163.45", "KWD": "0.3325"},
    date(2024, 4, 2): {"USD": "1.0767", "JPY": "163.22", "KWD": "0.3311"},
}


def as_text(rates: FxRates) -> dict[date, dict[str, str]]:
    return {day: {code: str(rate) for code, rate in rates.rates[day].items()} for day in rates.days}


def feed_of(days: dict[date, dict[str, str]], *, name: str = FEED) -> FxRates:
    cubes = "".join(
        f'<Cube time="{day}">'
        + "".join(f'<Cube currency="{c}" rate="{r}"/>' for c, r in rates.items())
        + "</Cube>"
        for day, rates in days.items()
    )
    return parse_eurofxref(f"{HEAD}<Cube>{cubes}</Cube></gesmes:Envelope>".encode(), feed=name)


# ------------------------------------------------------------------------------------------- reading


def test_the_hist_format_is_read_exactly_as_written() -> None:
    rates = parse_eurofxref(HIST.encode(), feed=FEED)
    assert rates.feed == FEED
    assert rates.days == (date(2024, 3, 27), date(2024, 3, 28), date(2024, 4, 2))  # ascending
    assert (rates.oldest, rates.newest) == (date(2024, 3, 27), date(2024, 4, 2))
    assert as_text(rates) == EXPECTED  # "163.9" stays "163.9", a Decimal, not a float
    assert rates.currencies == {"USD", "JPY", "KWD"}


def test_the_daily_format_with_single_quotes_and_trailing_zeros() -> None:
    daily = HEAD + (
        "\t<Cube>\n\t\t<Cube time='2024-06-28'>\n"
        "\t\t\t<Cube currency='USD' rate='1.0705'/>\n\t\t\t<Cube currency='HUF' rate='395.10'/>\n"
        "\t\t</Cube>\n\t</Cube>\n</gesmes:Envelope>\n"
    )
    rates = parse_eurofxref(daily.encode(), feed="eurofxref-daily.xml")
    assert as_text(rates) == {date(2024, 6, 28): {"USD": "1.0705", "HUF": "395.10"}}


TOLERATED = {
    "no namespaces at all": (
        '<Envelope><Cube><Cube time="2024-03-27"><Cube currency="USD" rate="1.0824"/><Cube currency="JPY" '
        'rate="163.9"/><Cube currency="KWD" rate="0.333"/></Cube><Cube time="2024-03-28"><Cube currency="USD" '
        'rate="1.0811"/><Cube currency="JPY" rate="163.45"/><Cube currency="KWD" rate="0.3325"/></Cube>'
        '<Cube time="2024-04-02"><Cube currency="USD" rate="1.0767"/><Cube currency="JPY" rate="163.22"/>'
        '<Cube currency="KWD" rate="0.3311"/></Cube></Cube></Envelope>'
    ),
    "another prefix, whitespace everywhere, any order, unknown elements and attributes": (
        "<?xml version='1.0'?>\r\n<x:Envelope xmlns:x='urn:rates' source='finance'>\r\n"
        "  <x:Note>rates as of close</x:Note>\r\n  <x:Cube>\r\n"
        "    <x:Cube time=' 2024-04-02 ' published='16:00'>\r\n"
        "      <x:Cube rate=' 0.3311 ' currency=' kwd '/>\r\n"
        "      <x:Cube currency='JPY' rate='163.22'><x:Comment>Tokyo</x:Comment></x:Cube>\r\n"
        "      <x:Cube currency='USD'\r\n              rate='1.0767'/>\r\n    </x:Cube>\r\n"
        "    <x:Cube time='2024-03-27'><x:Cube currency='JPY' rate='163.9'/><x:Cube currency='USD' "
        "rate='1.0824'/><x:Cube currency='KWD' rate='0.333'/></x:Cube>\r\n"
        "    <x:Cube time='2024-03-28'><x:Cube currency='KWD' rate='0.3325'/><x:Cube currency='USD' "
        "rate='1.0811'/><x:Cube currency='JPY' rate='163.45'/><x:Cube currency='EUR' rate='1'/>"
        "<x:Cube currency='TRY' rate='N/A'/></x:Cube>\r\n  </x:Cube>\r\n</x:Envelope>\r\n"
    ),
    "a byte order mark and the days split in two blocks": "\ufeff"
    + HIST.replace(
        '</Cube>\n    <Cube time="2024-03-27">',
        '</Cube>\n  </Cube>\n  <Cube>\n    <Cube time="2024-03-27">',
    ),
}


@pytest.mark.parametrize("document", TOLERATED.values(), ids=TOLERATED.keys())
def test_reading_is_tolerant_of_layout_quotes_order_and_unknown_elements(document: str) -> None:
    assert as_text(parse_eurofxref(document.encode("utf-8"), feed=FEED)) == EXPECTED


def test_an_encoding_the_declaration_names_is_honoured() -> None:
    document = HIST.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').replace(
        "Reference rates", "Taux de référence"
    )
    assert as_text(parse_eurofxref(document.encode("latin-1"), feed=FEED)) == EXPECTED


class Trickle(io.RawIOBase):
    """A file that gives a few bytes per read, so values straddle the chunks."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(7, size if size >= 0 else 7))


def test_a_file_read_in_chunks_gives_the_same_rates_as_bytes() -> None:
    assert as_text(parse_eurofxref(Trickle(HIST.encode()), feed="rates.xml")) == EXPECTED  # type: ignore[arg-type]


def test_a_day_written_twice_with_the_same_rates_is_one_day() -> None:
    twice = HIST.replace(
        "</Cube>\n</gesmes",
        '<Cube time="2024-03-27"><Cube currency="USD" rate="1.08240"/></Cube></Cube>\n</gesmes',
    )
    assert as_text(parse_eurofxref(twice.encode(), feed=FEED)) == EXPECTED


NOT_THE_FORMAT = {
    "an HTML page": (
        b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><br></body></html>",
        "DOCTYPE",
    ),
    "JSON": (b'{"rates": {"USD": 1.08}}', "not well-formed"),
    "XML of another kind": (b"<rss><channel><title>ECB</title></channel></rss>", "no <Cube>"),
    "entities to expand": (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
        b"<Envelope><Cube>&lol2;</Cube></Envelope>",
        "DOCTYPE",
    ),
    "a date that is none": (HIST.replace("2024-03-28", "2024-13-28").encode(), "time='2024-13-28'"),
    "a decimal comma": (HIST.replace('"1.0811"', '"1,0811"').encode(), "'1,0811'"),
    "a rate of zero": (HIST.replace('"1.0811"', '"0"').encode(), "USD rate '0'"),
    "a negative rate": (HIST.replace('"1.0811"', '"-1.0811"').encode(), "'-1.0811'"),
    "NaN": (HIST.replace('"1.0811"', '"NaN"').encode(), "'NaN'"),
    "a word": (HIST.replace('"1.0811"', '"high"').encode(), "'high'"),
    "a code that is none": (
        HIST.replace('currency="KWD" rate="0.3325"', 'currency="KW" rate="0.3325"').encode(),
        "'KW'",
    ),
    "a rate without its value": (
        HIST.replace('rate="0.3325"', "").encode(),
        "KWD rate has no rate attribute",
    ),
    "a rate outside a day": (
        HEAD.encode() + b'<Cube><Cube currency="USD" rate="1.1"/></Cube></gesmes:Envelope>',
        "outside",
    ),
    "two rates for one currency and day": (
        HIST.replace(
            "</Cube>\n</gesmes",
            '<Cube time="2024-03-27"><Cube currency="USD" rate="1.09"/></Cube></Cube>\n</gesmes',
        ).encode(),
        "two rates, 1.0824 and 1.09",
    ),
    "a euro that is not 1": (
        HIST.replace('currency="KWD" rate="0.333"', 'currency="EUR" rate="1.01"').encode(),
        "not 1",
    ),
    "a body cut short": (HIST.encode()[: len(HIST) // 2], "not well-formed"),
}


@pytest.mark.parametrize(("document", "detail"), NOT_THE_FORMAT.values(), ids=NOT_THE_FORMAT.keys())
def test_what_is_not_the_format_is_refused_naming_the_feed_and_what_to_do(
    document: bytes, detail: str
) -> None:
    with pytest.raises(FxFeedFormatError) as raised:
        parse_eurofxref(document, feed=FEED)
    message = str(raised.value)
    assert not isinstance(raised.value, FxFeedEmptyError)
    assert FEED in message and detail in message and "What to do: check fx_rates_url" in message


def test_a_refused_document_is_quoted_by_its_beginning() -> None:
    with pytest.raises(FxFeedFormatError, match=r"it starts with '<html> <body>Proxy login"):
        parse_eurofxref(b"<html>\n  <body>Proxy login</body>\n</html>", feed=FEED)


@pytest.mark.parametrize(
    "document",
    [b"", b"  \n ", (HEAD + "<Cube>\n</Cube></gesmes:Envelope>").encode(),
     (HEAD + '<Cube><Cube time="2024-03-27"></Cube></Cube></gesmes:Envelope>').encode()],
    ids=["no bytes", "blanks", "no days", "a day without rates"],
)  # fmt: skip
def test_a_feed_without_rates_is_empty(document: bytes) -> None:
    with pytest.raises(
        FxFeedEmptyError, match=r"FX feed https://mirror\.example/eurofxref-hist\.xml .*What to do"
    ):
        parse_eurofxref(document, feed=FEED)


def test_the_rates_pickle_and_are_checked_when_made_by_hand() -> None:
    rates = parse_eurofxref(HIST.encode(), feed=FEED)
    assert pickle.loads(pickle.dumps(rates)) == rates  # across processes (Dagster steps)
    with pytest.raises(ValueError, match="ascending"):
        FxRates(feed=FEED, days=tuple(reversed(rates.days)), rates=rates.rates)
    with pytest.raises(ValueError, match="ascending"):
        FxRates(feed=FEED, days=(), rates={})


# ------------------------------------------------------------------------------------------- lookups

RATES = parse_eurofxref(HIST.encode(), feed=FEED)
# The week of Easter 2024 as the ECB published it: Thursday 28 March, then Tuesday 2 April.
THURSDAY, GOOD_FRIDAY, SATURDAY, SUNDAY, EASTER_MONDAY, TUESDAY = (
    date(2024, 3, 28) + timedelta(days=n) for n in (0, 1, 2, 3, 4, 5)
)


def looked_up(day: date, source: str, target: str) -> UsedRate:
    used = rate_for(RATES, day, source, target)
    assert isinstance(used, UsedRate), used
    return used


def test_a_published_day_uses_its_own_rate() -> None:
    used = looked_up(TUESDAY, "USD", "EUR")
    assert (used.day, used.rate_date, used.feed) == (TUESDAY, TUESDAY, FEED)
    assert used.rate == cross_rate(Decimal("1.0767"), Decimal(1))


@pytest.mark.parametrize(
    "day", [GOOD_FRIDAY, SATURDAY, SUNDAY, EASTER_MONDAY], ids=lambda d: d.strftime("%A")
)
def test_a_day_without_rates_uses_the_latest_published_before_it(day: date) -> None:
    """Good Friday, the weekend and Easter Monday all take Thursday's rate: the feed has passed them."""
    used = looked_up(day, "JPY", "USD")
    assert (used.day, used.rate_date) == (day, THURSDAY)
    assert used.rate == cross_rate(Decimal("163.45"), Decimal("1.0811"))


def test_a_saturday_uses_fridays_rate() -> None:
    friday, saturday = date(2024, 6, 28), date(2024, 6, 29)
    rates = feed_of({friday: {"USD": "1.0705"}, date(2024, 7, 1): {"USD": "1.0745"}})
    used = rate_for(rates, saturday, "EUR", "USD")
    assert isinstance(used, UsedRate)
    assert (used.rate_date, used.rate) == (friday, Decimal("1.0705"))


def test_a_day_after_the_newest_is_not_yet_published() -> None:
    """Even a Saturday after Friday's rates: the feed has not passed it, so it waits (a typed outcome,
    not an error) until Monday's rates are out."""
    friday = date(2024, 6, 28)
    rates = feed_of({friday: {"USD": "1.0705"}})
    outcome = rate_for(rates, friday + timedelta(days=1), "USD", "EUR")
    assert outcome == NotYetPublished(day=date(2024, 6, 29), newest=friday, feed=FEED)
    assert "2024-06-29 are not published yet" in outcome.message and "2024-06-28" in outcome.message
    assert "waits for the next run" in outcome.message
    assert isinstance(rate_for(rates, friday, "USD", "EUR"), UsedRate)


def test_a_day_before_the_feed_is_an_error_naming_where_it_starts() -> None:
    with pytest.raises(
        DayBeforeFeedError, match=r"starts on 2024-03-27: it has no rate for 2024-03-26"
    ) as raised:
        rate_for(RATES, date(2024, 3, 26), "USD", "JPY")
    assert (raised.value.day, raised.value.oldest, raised.value.feed) == (
        date(2024, 3, 26),
        date(2024, 3, 27),
        FEED,
    )


@pytest.mark.parametrize(
    ("source", "target", "missing", "role"),
    [("VND", "USD", "VND", "account currency"), ("USD", "TWD", "TWD", "reporting currency"),
     ("aed", "EUR", "AED", "account currency")],
)  # fmt: skip
def test_a_currency_the_feed_lacks_is_a_typed_error_naming_it_and_the_options(
    source: str, target: str, missing: str, role: str
) -> None:
    # A day after the newest too: a currency the feed never carries fails now, it does not wait.
    for day in (TUESDAY, TUESDAY + timedelta(days=30)):
        with pytest.raises(CurrencyNotInFeedError) as raised:
            rate_for(RATES, day, source, target)
        error = raised.value
        assert (error.currency, error.role, error.day, error.last_published) == (missing, role, day, None)
        message = str(error)
        assert f"carries no {missing} rates at all, which the {role} {missing} needs" in message
        assert "point fx_rates_url at a file of daily rates" in message and f"carries {missing}" in message
        assert "leave reporting_currency unset" in message and FEED in message


def test_a_currency_no_longer_published_names_its_last_rate() -> None:
    """RUB's rates stopped in March 2022: a later day does not quietly take a years-old rate."""
    rates = feed_of(
        {
            date(2022, 3, 1): {"USD": "1.1162", "RUB": "117.2010"},
            date(2022, 3, 2): {"USD": "1.1139"},
            date(2022, 3, 7): {"USD": "1.0892"},
        }
    )
    with pytest.raises(
        CurrencyNotInFeedError, match=r"has no RUB rate for 2022-03-05 \(its last was of 2022-03-01\)"
    ) as raised:
        rate_for(rates, date(2022, 3, 5), "RUB", "USD")
    assert raised.value.last_published == date(2022, 3, 1)
    used = rate_for(rates, date(2022, 3, 1), "RUB", "USD")
    assert isinstance(used, UsedRate) and used.rate == cross_rate(Decimal("117.2010"), Decimal("1.1162"))


def test_one_currency_to_itself_is_exactly_one_without_the_feed() -> None:
    for day in (TUESDAY, TUESDAY + timedelta(days=400), date(1990, 1, 1)):
        used = looked_up(day, "VND", "vnd")
        assert (used.rate, used.rate_date, used.from_currency, used.to_currency) == (
            Decimal(1),
            day,
            "VND",
            "VND",
        )


def test_the_euro_on_either_side() -> None:
    to_usd = looked_up(THURSDAY, "EUR", "USD")
    assert str(to_usd.rate) == "1.0811"  # the published rate itself, as written
    from_usd = looked_up(THURSDAY, "USD", "EUR")
    assert from_usd.rate == Decimal("0.9249838127832762926648783646")  # 1 / 1.0811, 28 digits
    assert convert(Decimal("1081.10"), from_usd) == Decimal("1000.00")
    assert convert(Decimal("1000"), to_usd) == Decimal("1081.10")


def test_a_cross_rate_goes_through_the_euro() -> None:
    used = looked_up(THURSDAY, "JPY", "USD")
    assert used.rate == Decimal("0.006614255123891098195166717651")  # 1.0811 / 163.45
    assert convert(Decimal("103767"), used) == Decimal("686.34")  # 686.3414..., rounded once, to cents
    assert convert(Decimal("103767"), looked_up(THURSDAY, "JPY", "KWD")) == Decimal("211.089")  # 3 decimals
    # Back to yen, 0 decimals: 103766.787, the cents lost one way are not found the other.
    assert convert(Decimal("686.34"), looked_up(THURSDAY, "USD", "JPY")) == Decimal("103767")


def test_currency_codes_are_trimmed_and_checked() -> None:
    assert looked_up(THURSDAY, " usd ", "Jpy").rate == cross_rate(Decimal("1.0811"), Decimal("163.45"))
    with pytest.raises(ValueError, match="'US' is not an ISO 4217 currency code"):
        rate_for(RATES, THURSDAY, "US", "JPY")


# ------------------------------------------------------------------------ exact arithmetic, checked
# against an oracle in integers and fractions, not Decimal.


def round_half_even(value: Fraction, places: int) -> Decimal:
    scaled = value * 10**places
    floor = scaled.numerator // scaled.denominator
    rest = scaled - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2):
        floor += 1
    return Decimal(floor).scaleb(-places)


def round_significant(value: Fraction, digits: int) -> Decimal:
    places = 0
    while value * 10**places < 10 ** (digits - 1):
        places += 1
    while value * 10**places >= 10**digits:
        places -= 1
    return round_half_even(value, places)


ecb_rates = st.builds(
    lambda digits, exponent: Decimal(digits).scaleb(exponent),
    st.integers(1, 9_999_999),  # the ECB writes at most 7 significant digits
    st.integers(-7, 0),
)
amounts = st.builds(
    lambda units, exponent: Decimal(units).scaleb(exponent),
    st.integers(-(10**15), 10**15),
    st.integers(-6, 0),
)
any_rates = st.decimals(
    min_value=Decimal("1e-12"), max_value=Decimal("1e12"), places=None, allow_nan=False, allow_infinity=False
).filter(lambda rate: rate > 0 and len(rate.as_tuple().digits) <= CROSS_RATE_DIGITS)
MINOR = {"JPY": 0, "USD": 2, "KWD": 3}


@given(ecb_rates, ecb_rates)
def test_a_cross_rate_is_the_exact_quotient_to_28_significant_digits(
    from_per_euro: Decimal, to_per_euro: Decimal
) -> None:
    rate = cross_rate(from_per_euro, to_per_euro)
    assert rate == round_significant(Fraction(to_per_euro) / Fraction(from_per_euro), CROSS_RATE_DIGITS)
    assert len(rate.as_tuple().digits) <= CROSS_RATE_DIGITS


def used(rate: Decimal, currency: str) -> UsedRate:
    return UsedRate(day=THURSDAY, from_currency="EUR" if currency != "EUR" else "USD", to_currency=currency,
                    rate=rate, rate_date=THURSDAY, feed=FEED)  # fmt: skip


@pytest.mark.parametrize(
    ("currency", "amount", "converted"),
    [("JPY", "2.5", "2"), ("JPY", "3.5", "4"), ("JPY", "0.5", "0"), ("JPY", "103767.00", "103767"),
     ("USD", "0.125", "0.12"), ("USD", "0.135", "0.14"), ("USD", "1.005", "1.00"), ("USD", "12.3", "12.30"),
     ("KWD", "0.0005", "0.000"), ("KWD", "0.0015", "0.002"), ("KWD", "1.23456", "1.235"),
     ("USD", "-0.125", "-0.12"), ("USD", "-0.001", "0.00")],
)  # fmt: skip
def test_amounts_round_half_even_to_the_minor_unit(currency: str, amount: str, converted: str) -> None:
    result = convert(Decimal(amount), used(Decimal(1), currency))
    assert str(result) == converted  # the value and the places: "12.30", never "-0.00"


@given(st.lists(amounts, min_size=1, max_size=40), any_rates, st.sampled_from(sorted(MINOR)))
def test_each_amount_is_rounded_once_and_the_sum_is_exact(
    xs: list[Decimal], rate: Decimal, currency: str
) -> None:
    """What Amplitude sums for a day, Σ ad_metrics.cost, is exactly Σ round(spend × rate): each
    conversion is the exact product rounded once, half-even, with the currency's places."""
    places = MINOR[currency]
    converted = [convert(x, used(rate, currency)) for x in xs]
    expected = [round_half_even(Fraction(x) * Fraction(rate), places) for x in xs]
    assert converted == expected
    assert all(c.as_tuple().exponent == -places for c in converted)
    assert sum(converted, Decimal(0)) == sum((Fraction(e) for e in expected), Fraction(0))


def test_an_amount_that_cannot_be_converted_exactly_is_refused() -> None:
    with pytest.raises(ValueError, match="not a finite amount"):
        convert(Decimal("NaN"), used(Decimal(1), "USD"))
    # 60 digits times 28: past the exact product's 80 digits, refused rather than rounded twice.
    with pytest.raises(ValueError, match="the product has over 80 digits"):
        convert(Decimal("1" * 60), used(Decimal("0.006614255123891098195166717651"), "USD"))


# ------------------------------------------------------------------------------- the record of a rate

records = st.builds(
    UsedRate,
    day=st.dates(date(1999, 1, 4), date(2100, 1, 1)),
    from_currency=st.sampled_from(["JPY", "EUR", "KWD"]),
    to_currency=st.sampled_from(["USD", "GBP"]),
    rate=any_rates,
    rate_date=st.just(date(1999, 1, 4)),
    feed=st.sampled_from([FEED, "/srv/finance/rates.xml", "file:///srv/rates%20v2.xml"]),
)


@given(records)
def test_the_record_of_a_rate_round_trips_through_json_exactly(record: UsedRate) -> None:
    again = UsedRate.model_validate_json(record.model_dump_json())
    assert again == record
    assert again.rate.as_tuple() == record.rate.as_tuple()  # the same digits and exponent, not just equal


def test_a_looked_up_rate_round_trips_as_json_text() -> None:
    record = looked_up(SATURDAY, "JPY", "USD")
    text = record.model_dump_json()
    assert '"rate":"0.006614255123891098195166717651"' in text and '"rate_date":"2024-03-28"' in text
    assert UsedRate.model_validate_json(text) == record


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [({"from_currency": "yen"}, "pattern"), ({"rate": Decimal(0)}, "greater than 0"),
     ({"rate": Decimal("Infinity")}, "finite"), ({"rate_date": SUNDAY}, "is after the day"),
     ({"to_currency": "JPY", "rate": Decimal(2)}, "to itself must be 1"), ({"extra": 1}, "Extra inputs")],
)  # fmt: skip
def test_a_record_that_cannot_be_is_refused(changes: dict[str, object], complaint: str) -> None:
    fields: dict[str, object] = {"day": SATURDAY, "from_currency": "JPY", "to_currency": "USD",
                                 "rate": Decimal("0.0066"), "rate_date": THURSDAY, "feed": FEED}  # fmt: skip
    with pytest.raises(ValueError, match=complaint):
        UsedRate.model_validate({**fields, **changes})
