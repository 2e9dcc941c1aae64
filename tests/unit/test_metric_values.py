"""Exact parsing of TikTok metric strings and the arithmetic of MetricTotals."""

from __future__ import annotations

import dataclasses
import pickle
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiktok_amp_assets.core.metric_values import (
    MONEY_TYPE,
    MetricParseError,
    MetricTotals,
    count_column,
    money_as_written,
    money_column,
    parse_count,
    parse_money,
)
from tiktok_amp_assets.core.tiktok_contract import MISSING_METRIC_VALUES


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12.30", Decimal("12.30")),
        ("0.00", Decimal("0.00")),
        # Three decimals, as real answers of USD and RUB accounts write spend (Airbyte's
        # integration_tests/expected_records.jsonl: "60.000", "0.000"); whole units for JPY.
        ("60.000", Decimal("60.000")),
        ("0.000", Decimal("0.000")),
        ("1520", Decimal("1520")),
        ("0", Decimal(0)),
        (" 7.05 ", Decimal("7.05")),
        ("1234567890.12", Decimal("1234567890.12")),
        (12, Decimal(12)),
        (12.3, Decimal("12.3")),
        (0.1, Decimal("0.1")),
        (Decimal("5.50"), Decimal("5.50")),
    ],
)
def test_parse_money_is_exact(value: object, expected: Decimal) -> None:
    parsed = parse_money(value, field="spend")
    assert parsed == expected
    # Same digits, not merely equal: "12.30" keeps its two decimals.
    assert str(parsed) == str(expected)


def test_parse_money_never_goes_through_float() -> None:
    assert parse_money("0.10", field="spend") + parse_money("0.20", field="spend") == Decimal("0.30")
    assert parse_money(0.1, field="spend") != Decimal(0.1)  # noqa: RUF032 - not the binary expansion


@pytest.mark.parametrize("marker", [*sorted(MISSING_METRIC_VALUES), None, "  -  ", " "])
def test_missing_markers_are_none_not_zero(marker: object) -> None:
    assert parse_money(marker, field="spend") is None
    assert parse_count(marker, field="clicks") is None


@pytest.mark.parametrize(
    "value",
    [
        "NaN",
        "nan",
        "Infinity",
        "-inf",
        "abc",
        "12,30",
        "1,000.00",
        "1e3",
        "12.3.4",
        ".5",
        "5.",
        "$12",
        True,
        False,
        float("nan"),
        float("inf"),
        float("-inf"),
        Decimal("NaN"),
        Decimal("Infinity"),
        [1],
        {},
        b"12",
        "-12.30",
        -1,
        "٣",
    ],
)
def test_parse_money_rejects_garbage(value: object) -> None:
    with pytest.raises(MetricParseError) as caught:
        parse_money(value, field="spend")
    assert caught.value.field == "spend"
    assert caught.value.value is value
    assert "spend" in str(caught.value)


def test_error_message_names_field_and_value() -> None:
    with pytest.raises(MetricParseError, match=r"'impressions'.*'lots'"):
        parse_count("lots", field="impressions")


def test_error_message_quotes_long_values_briefly() -> None:
    with pytest.raises(MetricParseError) as caught:
        parse_money("x" * 10_000, field="spend")
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1000", 1000),
        ("0", 0),
        ("12.0", 12),
        ("12.00", 12),
        (" 3 ", 3),
        (7, 7),
        (7.0, 7),
        ("9223372036854775807", 2**63 - 1),
    ],
)
def test_parse_count(value: object, expected: int) -> None:
    parsed = parse_count(value, field="impressions")
    assert parsed == expected
    assert type(parsed) is int


@pytest.mark.parametrize(
    "value", ["12.5", "0.1", "-1", -3, "-0.0001", 2.5, True, "1e3", "ten", "9" * 5000 + ".5"]
)
def test_parse_count_rejects(value: object) -> None:
    with pytest.raises(MetricParseError):
        parse_count(value, field="clicks")


@pytest.mark.parametrize("value", ["9223372036854775808", "18446744073709551615", "9" * 10_000, 2**64])
def test_counts_beyond_64_bits_are_refused(value: object) -> None:
    # The ledger stores counts as SQLite's 64-bit integers (an OverflowError mid-upload otherwise), and
    # "9" * 10_000 is beyond Python's 4,300-digit int(str) limit: a MetricParseError, nothing else leaks.
    with pytest.raises(MetricParseError, match="too large for a count"):
        parse_count(value, field="impressions")


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("999999999999999.99", True),
        ("1000000000000000", False),
        ("1" + "0" * 400, False),  # float() of it is inf: no JSON number for Amplitude
        ("0.000001", True),
        ("12.3000000000", True),  # trailing zeros are no precision
        ("0.0000001", False),
        ("0." + "0" * 5000 + "1", False),  # its sums would be rounded to Decimal's 28 digits
    ],
)
def test_money_must_fit_exact_sums(value: str, accepted: bool) -> None:
    if accepted:
        assert parse_money(value, field="spend") == Decimal(value)
    else:
        with pytest.raises(MetricParseError, match="not a plausible amount"):
            parse_money(value, field="spend")


@given(st.one_of(st.text(), st.none(), st.integers(), st.floats(), st.booleans(), st.decimals()))
def test_parsers_raise_only_metric_parse_error(value: object) -> None:
    for parse in (parse_money, parse_count):
        try:
            result = parse(value, field="x")
        except MetricParseError:
            continue
        assert result is None or isinstance(result, (Decimal, int))


@given(st.decimals(min_value=0, max_value=10**12, places=2, allow_nan=False, allow_infinity=False))
def test_money_text_round_trips(amount: Decimal) -> None:
    assert parse_money(str(amount), field="spend") == amount


_metric_texts = st.one_of(
    st.from_regex(r"[ ]?[+-]?[0-9]{1,20}(\.[0-9]{0,8})?[ ]?", fullmatch=True),
    st.sampled_from([*sorted(MISSING_METRIC_VALUES), " - ", "1e3", "NaN", "12,30", "\ud83d", "1\n"]),
)
_metric_values = st.one_of(_metric_texts, st.none(), st.integers(), st.floats(), st.booleans())


def _one_by_one(parse: object, values: list[object]) -> tuple[list[object], int | None]:
    parsed = []
    for index, value in enumerate(values):
        try:
            parsed.append(parse(value, field="x"))  # type: ignore[operator]
        except MetricParseError:
            return parsed, index
    return parsed, None


@given(st.lists(_metric_values, max_size=12))
def test_columns_accept_refuse_and_convert_exactly_as_the_scalar_parsers(values: list[object]) -> None:
    for column, parse in ((money_column, parse_money), (count_column, parse_count)):
        expected, bad = _one_by_one(parse, values)
        if bad is None:
            converted = column(values, field="x").to_pylist()
            assert converted == expected
            assert all(type(a) is type(b) for a, b in zip(converted, expected, strict=True))
        else:
            with pytest.raises(MetricParseError) as caught:
                column(values, field="x")
            assert caught.value.row == bad and caught.value.field == "x"


@pytest.mark.parametrize(
    ("stored", "written"),
    [("12.300000", "12.30"), ("0.000000", "0.00"), ("5066.000000", "5066.00"), ("0.125000", "0.125"),
     ("0.000001", "0.000001"), ("100.000000", "100.00"), ("999999999999999.999990", "999999999999999.99999")],
)  # fmt: skip
def test_money_as_written_keeps_the_value_and_tiktoks_form(stored: str, written: str) -> None:
    assert str(money_as_written(Decimal(stored))) == written
    assert money_as_written(Decimal(stored)) == Decimal(stored)


def test_money_column_is_an_exact_decimal_never_a_float() -> None:
    column = money_column(
        ["12.30", "-", None, "0.10", "999999999999999.999999", "60.000", "1520", "0.000"], field="spend"
    )
    assert column.type == MONEY_TYPE
    assert column.to_pylist() == [
        Decimal("12.30"),
        None,
        None,
        Decimal("0.10"),
        Decimal("999999999999999.999999"),
        Decimal("60"),
        Decimal("1520"),
        Decimal("0"),
    ]
    assert [money_as_written(amount) for amount in column.to_pylist()[5:]] == [
        Decimal("60.00"),
        Decimal("1520.00"),
        Decimal("0.00"),
    ]
    assert count_column(["0", "", "9223372036854775807"], field="clicks").to_pylist() == [0, None, 2**63 - 1]


def totals(cost: str, impressions: int, clicks: int, conversions: int) -> MetricTotals:
    return MetricTotals(cost=Decimal(cost), impressions=impressions, clicks=clicks, conversions=conversions)


def test_totals_subtract_and_add() -> None:
    current = totals("12.30", 1000, 12, 5)
    counted = totals("12.00", 990, 12, 3)
    correction = current - counted
    assert correction == totals("0.30", 10, 0, 2)
    assert counted + correction == current
    assert not correction.is_zero()


def test_totals_can_go_negative_for_downward_restatements() -> None:
    assert totals("10.00", 100, 5, 1) - totals("12.50", 120, 5, 1) == totals("-2.50", -20, 0, 0)


def test_zero() -> None:
    assert MetricTotals.zero().is_zero()
    assert (totals("12.30", 1, 2, 3) - totals("12.3", 1, 2, 3)).is_zero()
    assert not totals("0.01", 0, 0, 0).is_zero()
    assert totals("1.00", 1, 1, 1) + MetricTotals.zero() == totals("1.00", 1, 1, 1)


def test_totals_are_frozen_and_strict() -> None:
    value = MetricTotals.zero()
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.cost = Decimal(1)  # type: ignore[misc]
    with pytest.raises(TypeError, match="cost must be a Decimal"):
        MetricTotals(cost=1.5, impressions=0, clicks=0, conversions=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clicks must be an int"):
        MetricTotals(cost=Decimal(0), impressions=0, clicks=True, conversions=0)  # type: ignore[arg-type]


def test_totals_cross_a_process_boundary_by_value() -> None:
    totals = MetricTotals(Decimal("-12.345678"), 2**62, 0, -3)
    copy = pickle.loads(pickle.dumps(totals))
    assert copy == totals and type(copy.cost) is Decimal
    # Rebuilt through the constructor, so its checks hold on the other side too.
    rebuild, values = totals.__reduce__()
    with pytest.raises(TypeError):
        rebuild(float(values[0]), *values[1:])
