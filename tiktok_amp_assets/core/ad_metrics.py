"""Normalization of one ad account's day of TikTok data into validated ad-day rows.

The raw asset stores, per ad account and day, what TikTok returned (see :func:`normalize_account_day`
for the shape). This module turns it into a typed Arrow table (:data:`METRICS_SCHEMA`), one row per ad that
delivered that day, with exact metric values and the ad's UTM values. The raw answers are read in
one pass into columns; the checks and conversions then run on whole columns. Rules:

- Every report row must be for the stored day (``stat_time_day`` = ``stat_date 00:00:00``) and
  carry an ``ad_id``; an ad appearing twice in one day is an error, not something to add up.
- Names and parent ids (``ad_name``, ``adgroup_id``, ``adgroup_name``, ``campaign_id``,
  ``campaign_name``) come from the report row. For deleted ads TikTok may send them as ``"-"`` or
  ``""``; then the ad's ``ad/get`` item supplies them (there only an empty value counts as absent,
  since ``ad/get`` returns the stored name as it is). If neither has one, the row is an error.
- Performance metrics (``spend``, ``impressions``, ``clicks``, ``conversion``) that are absent or
  written as a missing-value marker (``"-"``, ``""``, ``"N/A"``, ...) are null, meaning "TikTok did
  not report it", never zero. Anything else that is not a plain number is an error
  (:mod:`tiktok_amp_assets.core.metric_values`: cost is an exact ``decimal128(21, 6)``, never a float).
- ``landing_page_url`` comes from the ``ad/get`` item; when it is absent or blank, the first usable
  entry of the item's ``landing_page_urls`` (ads with several landing pages carry them there: an
  array of URLs, or of ``{"landing_page_url": ...}`` objects as in the SDK's models; a lone string
  counts as one), else of its Smart+ ad's ``landing_page_url_list``: the first http(s) URL with a
  host, else the first non-blank entry; null when none has one (:func:`landing_page`). The ad's
  ``utm_params`` are appended to it as TikTok does at click time, and the UTMs read from the
  result (:mod:`tiktok_amp_assets.core.utms`).
- Currency: the account's (``advertiser/info`` ``currency``); a ``currency`` on the report row,
  which the client no longer asks for (no public schema lists it as a report metric), is read
  first when present, as in raw files stored before (:func:`row_currencies`).
- Time zone: the account's ``timezone`` (the zone its report days are in, e.g. ``Etc/GMT+8``) if it is
  an IANA name, else its ``display_timezone`` if that is one (no longer asked for, present in raw
  files stored before), else an error (:func:`account_timezone`).

Every error is a :class:`ReportRowError` naming the advertiser, the day, the ad (when known) and the
field, so a failed run says which account and ad to look at.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import available_timezones

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tiktok_amp_assets.core.metric_values import (
    COUNT_TYPE,
    MONEY_TYPE,
    MetricParseError,
    MetricTotals,
    count_column,
    money_as_written,
    money_column,
)
from tiktok_amp_assets.core.tiktok_contract import (
    CLICKS,
    CONVERSIONS,
    DATE_FORMAT,
    IMPRESSIONS,
    MISSING_METRIC_VALUES,
    SPEND,
    STAT_TIME_DAY_FORMAT,
)
from tiktok_amp_assets.core.utms import (
    UTM_KEYS,
    is_web_url,
    landing_page_utms,
    utm_params_of,
    with_utm_params,
)

# TikTok ids are 64-bit numbers written as strings; letters are allowed so ids from other sources
# or future formats still pass, but never anything that would need escaping.
_ID_RE = re.compile(r"[0-9A-Za-z]+")  # used with fullmatch: "$" would let a trailing newline in
_ID_RE2 = r"^[0-9A-Za-z]+$"  # the same for Arrow (RE2: "$" is the end of the text)
_CURRENCY_RE2 = r"^[A-Z]{3}$"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# Attribute metrics the report carries and ad/get can stand in for, in the order they are checked.
_ATTRIBUTE_FIELDS = ("ad_name", "adgroup_id", "adgroup_name", "campaign_id", "campaign_name")
_ID_FIELDS = ("adgroup_id", "campaign_id")


def _column(name: str, arrow_type: pa.DataType, description: str, *, nullable: bool = False) -> pa.Field:
    return pa.field(name, arrow_type, nullable=nullable, metadata={"description": description})


# The metrics table, one row per ad account, ad and day: the columns of metrics/<day>.parquet.
METRICS_SCHEMA = pa.schema(
    [
        _column("advertiser_id", pa.string(), "TikTok ad account id"),
        _column("advertiser_name", pa.string(), "ad account name (advertiser/info)"),
        _column("ad_id", pa.string(), "TikTok ad id"),
        _column("stat_date", pa.date32(), "the day, in the ad account's time zone"),
        _column("ad_name", pa.string(), "ad name"),
        _column("adgroup_id", pa.string(), "ad group id"),
        _column("adgroup_name", pa.string(), "ad group name"),
        _column("campaign_id", pa.string(), "campaign id"),
        _column("campaign_name", pa.string(), "campaign name"),
        _column("currency", pa.string(), "ISO 4217 currency of cost (the ad account's)"),
        _column("timezone", pa.string(), "IANA time zone of the ad account"),
        _column("cost", MONEY_TYPE, "spend in currency, exact; null: not reported", nullable=True),
        _column("impressions", COUNT_TYPE, "null: not reported (never 0)", nullable=True),
        _column("clicks", COUNT_TYPE, "null: not reported (never 0)", nullable=True),
        _column("conversions", COUNT_TYPE, "null: not reported (never 0)", nullable=True),
        _column(
            "landing_page_url",
            pa.string(),
            "the ad's landing page as a click reaches it (ad/get's, its utm_params appended); null: none",
            nullable=True,
        ),
        _column("utm_source", pa.string(), "from the landing page URL, else inferred"),
        _column("utm_medium", pa.string(), "from the landing page URL, else inferred"),
        _column("utm_campaign", pa.string(), "from the landing page URL, else inferred"),
        _column("utm_content", pa.string(), "from the landing page URL, else inferred"),
        _column("utm_inferred", pa.list_(pa.string()), "the utm_* keys filled by default, sorted"),
    ]
)
METRIC_COLUMNS = ("cost", "impressions", "clicks", "conversions")


# Names a time zone database may hold that are no place's time: the machine's own zone
# ("localtime", depends on the host) and tzdata's placeholder "Factory".
_NOT_ACCOUNT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _iana_zones() -> frozenset[str]:
    # Scanned once. ZoneInfo() alone would also take a directory or any file under the zoneinfo path.
    return frozenset(available_timezones()) - _NOT_ACCOUNT_ZONES


def is_iana_timezone(name: object) -> bool:
    """Whether ``name`` is an IANA time zone name known to this Python (``America/Los_Angeles``)."""
    return isinstance(name, str) and name in _iana_zones()


class ReportRowError(ValueError):
    """A TikTok report row that cannot be turned into an ad-day row."""

    def __init__(
        self, *, advertiser_id: str, stat_date: str, ad_id: str | None, field: str, problem: str
    ) -> None:
        self.advertiser_id = advertiser_id
        self.stat_date = stat_date
        self.ad_id = ad_id
        self.field = field
        self.problem = problem
        ad = f", ad {ad_id}" if ad_id else ""
        super().__init__(
            f"TikTok advertiser {advertiser_id}, day {stat_date}{ad}: field {field!r}: {problem}"
        )


class AdDayMetrics(NamedTuple):
    """One row of the metrics table as Python values (:func:`table_rows`), for building its event;
    ``cost`` in TikTok's written form (:func:`~tiktok_amp_assets.core.metric_values.money_as_written`).

    Not validated again: the table's rows were checked when they were normalized. A named tuple:
    a year's upload makes half a million of them, at a tuple's cost.
    """

    advertiser_id: str
    advertiser_name: str
    ad_id: str
    stat_date: date
    ad_name: str
    adgroup_id: str
    adgroup_name: str
    campaign_id: str
    campaign_name: str
    currency: str
    timezone: str
    cost: Decimal | None
    impressions: int | None
    clicks: int | None
    conversions: int | None
    landing_page_url: str | None
    utm_source: str
    utm_medium: str
    utm_campaign: str
    utm_content: str
    utm_inferred: list[str]

    def totals(self) -> MetricTotals:
        """The four metrics, a missing one counted as zero (for sums and corrections)."""
        return MetricTotals(
            cost=self.cost if self.cost is not None else Decimal(0),
            impressions=self.impressions or 0,
            clicks=self.clicks or 0,
            conversions=self.conversions or 0,
        )


_TEXT_COLUMNS = [index for index, field in enumerate(METRICS_SCHEMA) if field.type == pa.string()]


def table_rows(table: pa.Table, *, shared_texts: dict[str, str] | None = None) -> list[AdDayMetrics]:
    """The rows of a metrics table (:data:`METRICS_SCHEMA`), in order.

    ``shared_texts``, a dict the caller keeps across calls, makes equal texts one object: an ad's
    ids, names and UTMs repeat every day, and a backfill holds two requests' worth of days
    (about 50 MB less for 40,000 events of 2,000 ads, measured).
    """
    columns = [table.column(name).to_pylist() for name in METRICS_SCHEMA.names]
    if shared_texts is not None:
        for index in _TEXT_COLUMNS:
            columns[index] = [
                text if text is None else shared_texts.setdefault(text, text) for text in columns[index]
            ]
    cost = METRICS_SCHEMA.get_field_index("cost")
    columns[cost] = [None if amount is None else money_as_written(amount) for amount in columns[cost]]
    return list(map(AdDayMetrics._make, zip(*columns, strict=True)))


def table_totals(table: pa.Table) -> MetricTotals:
    """The sums of the four metrics over ``table``, a missing value counted as zero; cost exactly."""
    cost = pc.sum(table.column("cost"), min_count=0).as_py()
    return MetricTotals(
        cost=money_as_written(cost) if cost is not None else Decimal(0),
        impressions=pc.sum(table.column("impressions"), min_count=0).as_py() or 0,
        clicks=pc.sum(table.column("clicks"), min_count=0).as_py() or 0,
        conversions=pc.sum(table.column("conversions"), min_count=0).as_py() or 0,
    )


def metrics_frame(table: pa.Table) -> pd.DataFrame:
    """A metrics table as pandas, exactly: cost as ``Decimal`` objects (never float), counts as
    nullable ``Int64`` (a metric TikTok did not report is ``<NA>``, not 0 or NaN), ``stat_date`` as
    ``datetime.date``, ids and names as strings."""
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _text(value: object) -> str | None:
    """A string as it is, or an int id as text (JSON may carry an id as a number); else None."""
    # Names are kept as TikTok stores them (no stripping): they must match what TikTok substitutes
    # into URL macros and shows in Ads Manager. Ids with spaces fail the id check instead.
    if isinstance(value, str):
        # Except half an emoji ("\\ud83d" in TikTok's JSON, a name cut mid-pair): no UTF-8 form, so
        # no row, file or event could hold it. It becomes U+FFFD; the raw file keeps the original.
        return value if value.isascii() else _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # Python ints are exact, so a 64-bit id survives
    return None


def _report_value(value: object) -> str | None:
    """A report attribute value, None when absent or a missing-value marker ("-" for deleted ads)."""
    text = _text(value)
    return None if text is None or text.strip() in MISSING_METRIC_VALUES else text


def _ad_get_value(value: object) -> str | None:
    """An ad/get value, None when absent or blank (ad/get returns stored values, no "-" markers)."""
    text = _text(value)
    return text if text is not None and text.strip() else None


def _as_mapping(value: object) -> Mapping[str, Any]:
    if type(value) is dict:  # what JSON gives: skips the slower abstract-class check
        return value
    return value if isinstance(value, Mapping) else {}


# What str.strip() removes (every character whose isspace() is true; Unicode has none beyond the
# first 65,536 code points): markers are matched after it in bulk exactly as _report_value does.
_STRIPPED = "".join(char for char in map(chr, range(0x10000)) if char.isspace())
_MISSING_MARKERS = pa.array(sorted(MISSING_METRIC_VALUES), pa.string())
_EMPTY = pa.array([""], pa.string())


def _text_column(values: Sequence[object], one_by_one: Callable[[object], str | None]) -> pa.Array:
    """``values`` as a string column; strings in bulk, anything else (an id sent as a number, half
    an emoji) through ``one_by_one``, the rule's scalar form."""
    try:
        return pa.array(values, pa.string())  # None is null; any other non-string raises
    except (pa.ArrowTypeError, pa.ArrowInvalid, UnicodeEncodeError):
        return pa.array([None if value is None else one_by_one(value) for value in values], pa.string())


def _report_column(values: Sequence[object]) -> pa.Array:
    """``_report_value`` of each value, as a string column (null: absent or a missing marker)."""
    column = _text_column(values, _report_value)
    return pc.if_else(pc.is_in(pc.utf8_trim(column, _STRIPPED), value_set=_MISSING_MARKERS), None, column)


def _ad_get_column(values: Sequence[object]) -> pa.Array:
    """``_ad_get_value`` of each value, as a string column (null: absent or blank)."""
    column = _text_column(values, _ad_get_value)
    return pc.if_else(pc.is_in(pc.utf8_trim(column, _STRIPPED), value_set=_EMPTY), None, column)


def _parse_day(stat_time_day: object) -> datetime | None:
    if not isinstance(stat_time_day, str):
        return None
    for fmt in (STAT_TIME_DAY_FORMAT, DATE_FORMAT):
        try:
            return datetime.strptime(stat_time_day.strip(), fmt)
        except ValueError:
            continue
    return None


def account_timezone(advertiser_info: Mapping[str, Any]) -> str | None:
    """The IANA time zone an account reports days in: ``timezone``, else ``display_timezone``.

    ``advertiser_info`` is one ``advertiser/info`` item; ``None`` when neither field is an IANA name.
    TikTok's report days are in ``timezone`` (a fixed offset all year, such as ``Etc/GMT+8`` for UTC-8,
    per TikTok's help); ``display_timezone`` is only a display name, read from older raw files.
    """
    for key in ("timezone", "display_timezone"):
        name = _text(advertiser_info.get(key))
        if is_iana_timezone(name):
            return name
    return None


def row_currencies(report_currencies: Sequence[object], account_currency: str | None) -> pa.Array:
    """The currency of each report row's cost: the row's ``currency`` metric, else the account's.

    Upper-cased and stripped; checked to be an ISO 4217 code afterwards, with the other columns.
    The rule runs once per distinct value (a day's rows repeat one or two).
    """
    reported = _report_column(report_currencies)
    distinct = pc.unique(reported)
    currencies = [(value or account_currency or "").strip().upper() for value in distinct.to_pylist()]
    return pa.array(currencies, pa.string()).take(pc.index_in(reported, value_set=distinct, skip_nulls=False))


def landing_page(ad_item: Mapping[str, Any]) -> str | None:
    """The ad's landing page URL: ``landing_page_url``, else the first usable of ``landing_page_urls``."""
    single = _ad_get_value(ad_item.get("landing_page_url"))
    if single is not None:
        return single
    several = ad_item.get("landing_page_urls")
    if not several and isinstance(smart_plus := ad_item.get("smart_plus_ad"), Mapping):
        several = smart_plus.get("landing_page_url_list")  # a Smart+ ad: [{"landing_page_url": ...}]
    entries = [several] if isinstance(several, str) else several if isinstance(several, list) else []
    candidates = (entry.get("landing_page_url") if isinstance(entry, Mapping) else entry for entry in entries)
    texts = [
        text for candidate in candidates if isinstance(candidate, str) and (text := _ad_get_value(candidate))
    ]
    # The first web address; text that is no URL only when there is nothing better.
    return next((text for text in texts if is_web_url(text)), texts[0] if texts else None)


def landing_page_urls(ad_items: Sequence[Mapping[str, Any]]) -> pa.Array:
    """Each ad's landing page (:func:`landing_page`) from its ``ad/get`` item, with its ``utm_params``
    appended as a click carries them; null when it has none (or there is no item)."""
    return _ad_get_column(
        [with_utm_params(landing_page(item), utm_params_of(item)) if item else None for item in ad_items]
    )


@functools.lru_cache(maxsize=65_536)  # an ad's URL and names repeat on every day of a backfill
def _utm_values(
    url: str | None,
    campaign_name: str,
    ad_name: str,
    adgroup_name: str,
    campaign_id: str,
    adgroup_id: str,
    ad_id: str,
) -> tuple[str, str, str, str, list[str]]:
    """The UTM columns of one row: the four values in UTM_KEYS order, then the inferred keys, sorted."""
    utms = landing_page_utms(
        url,
        campaign_name=campaign_name,
        ad_name=ad_name,
        adgroup_name=adgroup_name,
        campaign_id=campaign_id,
        adgroup_id=adgroup_id,
        ad_id=ad_id,
    )
    return (utms.utm_source, utms.utm_medium, utms.utm_campaign, utms.utm_content, sorted(utms.inferred))


def _first(mask: pa.Array) -> int | None:
    """The index of the first true value of a boolean array (null counts as false)."""
    found = pc.indices_nonzero(pc.fill_null(mask, False))
    return found[0].as_py() if len(found) else None


def normalize_account_day(raw: Mapping[str, Any]) -> pa.Table:
    """The metrics table (:data:`METRICS_SCHEMA`) of one ad account and day, sorted by ``ad_id``.

    ``raw`` is what the raw asset stores::

        {"advertiser_id": "7000000000000000001", "stat_date": "2026-11-23",
         "advertiser_info": {advertiser/info item: advertiser_id, name, currency, timezone,
                             (display_timezone in raw files stored before)},
         "report_rows": [{"dimensions": {"ad_id": ..., "stat_time_day": "2026-11-23 00:00:00"},
                          "metrics": {"spend": "12.30", "impressions": "1000", ...}}, ...],
         "ads": [ad/get items: ad_id, ad_name, adgroup_id, ..., landing_page_url, ...]}

    Raises :class:`ReportRowError` (rules: module docstring).
    """
    advertiser_id = _text(raw.get("advertiser_id")) or ""
    stat_date_text = _text(raw.get("stat_date")) or ""
    where = {"advertiser_id": advertiser_id or "(unknown)", "stat_date": stat_date_text or "(unknown)"}

    if not _ID_RE.fullmatch(advertiser_id):
        raise ReportRowError(**where, ad_id=None, field="advertiser_id", problem="missing or not an id")
    try:
        stat_date = datetime.strptime(stat_date_text, DATE_FORMAT).date()
    except ValueError:
        raise ReportRowError(**where, ad_id=None, field="stat_date", problem="expected YYYY-MM-DD") from None

    advertiser_info = _as_mapping(raw.get("advertiser_info"))
    info_advertiser_id = _text(advertiser_info.get("advertiser_id"))
    if info_advertiser_id and info_advertiser_id != advertiser_id:
        # A mix-up of accounts would put one account's spend in another's currency and time zone.
        raise ReportRowError(
            **where,
            ad_id=None,
            field="advertiser_info.advertiser_id",
            problem=f"advertiser/info is for advertiser {info_advertiser_id}",
        )
    advertiser_name = _text(advertiser_info.get("name")) or ""
    account_currency = _report_value(advertiser_info.get("currency"))
    timezone = account_timezone(advertiser_info)

    ads_by_id: dict[str, Mapping[str, Any]] = {}
    for item in raw.get("ads") or []:
        item = _as_mapping(item)
        item_ad_id = item.get("ad_id")
        if type(item_ad_id) is not str or not item_ad_id.isascii():
            item_ad_id = _text(item_ad_id)
        if item_ad_id:
            # ad/get pages can overlap when ads change during paging; the first copy is as good.
            ads_by_id.setdefault(item_ad_id, item)

    # TikTok's rows into columns of Python values (comprehensions over dicts: the only per-row
    # Python work); the checks and conversions follow on whole columns.
    report_rows = [_as_mapping(row) for row in raw.get("report_rows") or []]
    dimensions = [_as_mapping(row.get("dimensions")) for row in report_rows]
    metrics = [_as_mapping(row.get("metrics")) for row in report_rows]
    count = len(report_rows)
    if not count:
        return METRICS_SCHEMA.empty_table()
    raw_ad_ids = [dimension.get("ad_id") for dimension in dimensions]
    ad_id_column = _report_column(raw_ad_ids)
    ad_ids: list[str | None] = ad_id_column.to_pylist()

    def fail(index: int | None, field: str, problem: str) -> ReportRowError:
        ad_id = ad_ids[index] if index is not None and _ID_RE.fullmatch(ad_ids[index] or "") else None
        return ReportRowError(**where, ad_id=ad_id, field=field, problem=problem)

    bad = _first(pc.invert(pc.fill_null(pc.match_substring_regex(ad_id_column, _ID_RE2), False)))
    if bad is not None:
        raise fail(None, "ad_id", f"missing or not an id: {raw_ad_ids[bad]!r}")
    midnight = datetime(stat_date.year, stat_date.month, stat_date.day)
    expected_stat_time_day = midnight.strftime(STAT_TIME_DAY_FORMAT)
    stat_time_days = [dimension.get("stat_time_day") for dimension in dimensions]
    # The exact text TikTok writes needs no parsing (counted in C); anything else is parsed and compared.
    others = [] if stat_time_days.count(expected_stat_time_day) == count else stat_time_days
    for index, stat_time_day in enumerate(others):
        if stat_time_day != expected_stat_time_day and _parse_day(stat_time_day) != midnight:
            raise fail(
                index,
                "stat_time_day",
                f"row is for {stat_time_day!r}, not the stored day {stat_date.isoformat()}",
            )
    if pc.count_distinct(ad_id_column).as_py() != count:
        seen: set[str | None] = set()
        for index, ad_id in enumerate(ad_ids):
            if ad_id in seen:
                raise fail(index, "ad_id", "the ad appears more than once this day")
            seen.add(ad_id)
    items = [ads_by_id.get(ad_id) for ad_id in ad_ids]  # type: ignore[arg-type]
    item_advertiser_ids = [item.get("advertiser_id") if item else advertiser_id for item in items]
    others = [] if item_advertiser_ids.count(advertiser_id) == count else item_advertiser_ids
    for index, item_advertiser_id in enumerate(others):
        item_advertiser_id = _text(item_advertiser_id)
        if item_advertiser_id and item_advertiser_id != advertiser_id:
            raise fail(
                index, "ads.advertiser_id", f"ad/get returned this ad for advertiser {item_advertiser_id}"
            )

    attribute_columns: dict[str, pa.Array] = {}
    missing: list[tuple[int, int, str]] = []  # (row, field order, field) of values found nowhere
    for order, field in enumerate(_ATTRIBUTE_FIELDS):
        column = _report_column([row_metrics.get(field) for row_metrics in metrics])
        absent = pc.indices_nonzero(pc.is_null(column)).to_pylist()
        if absent:
            # Deleted ads: the report writes "-"; ad/get has the stored value.
            values = column.to_pylist()
            for index in absent:
                item = items[index]
                values[index] = _ad_get_value(item.get(field)) if item else None
                if values[index] is None:
                    missing.append((index, order, field))
            column = pa.array(values, pa.string())
        attribute_columns[field] = column
    if missing:
        index, _, field = min(missing)
        if items[index]:
            problem = "missing in the report row and in ad/get"
        else:
            # The usual cause: ad/get was asked without STATUS_ALL and left the deleted ad out.
            problem = "missing in the report row, and ad/get returned no such ad (fetch ads with STATUS_ALL)"
        raise fail(index, field, problem)
    for field in _ID_FIELDS:
        bad = _first(pc.invert(pc.match_substring_regex(attribute_columns[field], _ID_RE2)))
        if bad is not None:
            raise fail(bad, field, f"not an id: {attribute_columns[field][bad].as_py()!r}")
    currency_column = row_currencies(
        [row_metrics.get("currency") for row_metrics in metrics], account_currency
    )
    bad = _first(pc.invert(pc.match_substring_regex(currency_column, _CURRENCY_RE2)))
    if bad is not None:
        raise fail(bad, "currency", f"expected an ISO 4217 code, got {currency_column[bad].as_py()!r}")
    if timezone is None:
        raise fail(
            0,
            "timezone",
            "advertiser/info has no IANA time zone name in timezone "
            f"({advertiser_info.get('timezone')!r}) or display_timezone ({advertiser_info.get('display_timezone')!r})",
        )
    try:
        cost = money_column([row_metrics.get(SPEND) for row_metrics in metrics], field=SPEND)
        impressions = count_column(
            [row_metrics.get(IMPRESSIONS) for row_metrics in metrics], field=IMPRESSIONS
        )
        clicks = count_column([row_metrics.get(CLICKS) for row_metrics in metrics], field=CLICKS)
        conversions = count_column(
            [row_metrics.get(CONVERSIONS) for row_metrics in metrics], field=CONVERSIONS
        )
    except MetricParseError as error:
        raise fail(error.row, error.field, str(error)) from error

    url_column = landing_page_urls(items)
    urls = url_column.to_pylist()
    names = {field: attribute_columns[field].to_pylist() for field in _ATTRIBUTE_FIELDS}
    utm_columns = list(
        zip(
            *map(
                _utm_values,
                urls,
                names["campaign_name"],
                names["ad_name"],
                names["adgroup_name"],
                names["campaign_id"],
                names["adgroup_id"],
                ad_ids,
            ),
            strict=True,
        )
    )
    table = pa.Table.from_arrays(
        [
            pa.array([advertiser_id] * count, pa.string()),
            pa.array([advertiser_name] * count, pa.string()),
            ad_id_column,
            pa.array([stat_date] * count, pa.date32()),
            *(attribute_columns[field] for field in _ATTRIBUTE_FIELDS),
            currency_column,
            pa.array([timezone] * count, pa.string()),
            cost,
            impressions,
            clicks,
            conversions,
            url_column,
            *(pa.array(values, pa.string()) for values in utm_columns[: len(UTM_KEYS)]),
            pa.array(utm_columns[len(UTM_KEYS)], pa.list_(pa.string())),
        ],
        schema=METRICS_SCHEMA,
    )
    return table.take(pc.sort_indices(ad_id_column))


# A day's metrics table says which accounts it holds whole (Parquet key-value metadata, kept with the
# file): an account missing from it could not be imported that day, and its ad-days are then neither
# "no longer reported" for the restatement planner (core/upload_plan.py) nor zero.
IMPORTED_ACCOUNTS_KEY = b"tiktok_amp.imported_accounts"
# The day's gaps between ad rows and account totals (core/reconciliation.py), as JSON records.
TOTALS_GAPS_KEY = b"tiktok_amp.totals_gaps"


def with_day_facts(
    table: pa.Table, imported_accounts: Sequence[str], totals_gaps: Sequence[Mapping[str, Any]]
) -> pa.Table:
    """``table`` (a day's metrics) carrying which accounts it holds and the day's totals gaps."""
    return table.replace_schema_metadata(
        {
            IMPORTED_ACCOUNTS_KEY: json.dumps(sorted(imported_accounts)).encode(),
            TOTALS_GAPS_KEY: json.dumps(list(totals_gaps)).encode(),
        }
    )


def imported_accounts(table: pa.Table) -> frozenset[str] | None:
    """The accounts a day's metrics table holds whole; None for tables written before it said so
    (then every account it was built for)."""
    metadata = table.schema.metadata or {}
    if IMPORTED_ACCOUNTS_KEY not in metadata:
        return None
    return frozenset(json.loads(metadata[IMPORTED_ACCOUNTS_KEY]))
