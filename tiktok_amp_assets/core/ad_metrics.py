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
- Currency: the account's (``advertiser/info`` ``currency``), an ISO 4217 code.
- Time zone: the account's ``timezone`` (the zone its report days are in, e.g. ``Etc/GMT+8``), an
  IANA name (:func:`account_timezone`); a ``display_timezone`` beside it, which real answers carry,
  is a display name only and not read.

The steps, each a function below: validate the answer (:func:`_validated_answer`), join the ads
(:func:`_joined_attributes`), build the columns (:func:`_metric_columns`, :func:`_utm_columns`),
assemble the table (:func:`normalize_account_day`). The row contract, the columns and their types,
is declared once: :class:`AdDayMetrics`, from which :data:`METRICS_SCHEMA` is built.

Every error is a :class:`ReportRowError` naming the advertiser, the day, the ad (when known) and the
field, so a failed run says which account and ad to look at.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, NamedTuple, get_args, get_type_hints
from zoneinfo import available_timezones

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
_CURRENCY = re.compile(r"[A-Z]{3}")  # ISO 4217
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# Attribute metrics the report carries and ad/get can stand in for, in the order they are checked.
_ATTRIBUTE_FIELDS = ("ad_name", "adgroup_id", "adgroup_name", "campaign_id", "campaign_name")
_ID_FIELDS = ("adgroup_id", "campaign_id")


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


@dataclass(frozen=True)
class Column:
    """A column of the metrics table: its Arrow type and what it holds (shown in the Dagster UI)."""

    arrow_type: pa.DataType
    description: str


class AdDayMetrics(NamedTuple):
    """One row of the metrics table: the row contract, declared once (:data:`METRICS_SCHEMA` is built
    from it). As Python values (:func:`table_rows`), for building its event; ``cost`` in TikTok's
    written form (:func:`~tiktok_amp_assets.core.metric_values.money_as_written`). A column whose
    type admits None is nullable.

    Not validated again: the table's rows were checked when they were normalized. A named tuple:
    a year's upload makes half a million of them, at a tuple's cost.
    """

    advertiser_id: Annotated[str, Column(pa.string(), "TikTok ad account id")]
    advertiser_name: Annotated[str, Column(pa.string(), "ad account name (advertiser/info)")]
    ad_id: Annotated[str, Column(pa.string(), "TikTok ad id")]
    stat_date: Annotated[date, Column(pa.date32(), "the day, in the ad account's time zone")]
    ad_name: Annotated[str, Column(pa.string(), "ad name")]
    adgroup_id: Annotated[str, Column(pa.string(), "ad group id")]
    adgroup_name: Annotated[str, Column(pa.string(), "ad group name")]
    campaign_id: Annotated[str, Column(pa.string(), "campaign id")]
    campaign_name: Annotated[str, Column(pa.string(), "campaign name")]
    currency: Annotated[str, Column(pa.string(), "ISO 4217 currency of cost (the ad account's)")]
    timezone: Annotated[str, Column(pa.string(), "IANA time zone of the ad account")]
    cost: Annotated[Decimal | None, Column(MONEY_TYPE, "spend in currency, exact; null: not reported")]
    impressions: Annotated[int | None, Column(COUNT_TYPE, "null: not reported (never 0)")]
    clicks: Annotated[int | None, Column(COUNT_TYPE, "null: not reported (never 0)")]
    conversions: Annotated[int | None, Column(COUNT_TYPE, "null: not reported (never 0)")]
    landing_page_url: Annotated[
        str | None,
        Column(
            pa.string(),
            "the ad's landing page as a click reaches it (ad/get's, its utm_params appended); null: none",
        ),
    ]
    utm_source: Annotated[str, Column(pa.string(), "from the landing page URL, else inferred")]
    utm_medium: Annotated[str, Column(pa.string(), "from the landing page URL, else inferred")]
    utm_campaign: Annotated[str, Column(pa.string(), "from the landing page URL, else inferred")]
    utm_content: Annotated[str, Column(pa.string(), "from the landing page URL, else inferred")]
    utm_inferred: Annotated[
        list[str], Column(pa.list_(pa.string()), "the utm_* keys filled by default, sorted")
    ]

    def totals(self) -> MetricTotals:
        """The four metrics, a missing one counted as zero (for sums and corrections)."""
        return MetricTotals(
            cost=self.cost if self.cost is not None else Decimal(0),
            impressions=self.impressions or 0,
            clicks=self.clicks or 0,
            conversions=self.conversions or 0,
        )


def _schema(row_type: type[NamedTuple]) -> pa.Schema:
    fields = []
    for name, hint in get_type_hints(row_type, include_extras=True).items():
        python_type, column = get_args(hint)
        fields.append(
            pa.field(
                name,
                column.arrow_type,
                nullable=type(None) in get_args(python_type),
                metadata={"description": column.description},
            )
        )
    return pa.schema(fields)


# The metrics table, one row per ad account, ad and day: the columns of metrics/<day>.parquet.
METRICS_SCHEMA = _schema(AdDayMetrics)


_TEXT_COLUMNS = [index for index, field in enumerate(METRICS_SCHEMA) if field.type == pa.string()]


def table_rows(table: pa.Table, *, shared_texts: dict[str, str] | None = None) -> list[AdDayMetrics]:
    """The rows of a metrics table (:data:`METRICS_SCHEMA`), in order.

    ``shared_texts``, a dict the caller keeps across calls, makes equal texts one object: an ad's
    ids, names and UTMs repeat every day, and a backfill holds a few days' rows at once.
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
    """The IANA time zone an account reports days in: its ``timezone`` (a fixed offset all year, such as
    ``Etc/GMT+8`` for UTC-8, per TikTok's help); ``None`` when that is no IANA name.
    ``advertiser_info`` is one ``advertiser/info`` item."""
    name = _text(advertiser_info.get("timezone"))
    return name if is_iana_timezone(name) else None


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


class _Answer(NamedTuple):
    """One account's day as TikTok answered it, its shape checked (:func:`_validated_answer`): per
    report row, its ad id, its metrics and its ad's ``ad/get`` item (None when ad/get had none)."""

    advertiser_id: str
    stat_date: date
    advertiser_info: Mapping[str, Any]
    ad_ids: pa.Array
    metrics: list[Mapping[str, Any]]
    items: list[Mapping[str, Any] | None]

    def error(self, index: int | None, field: str, problem: str) -> ReportRowError:
        """A :class:`ReportRowError` for row ``index`` (the ad named when its id is usable)."""
        ad_id = self.ad_ids[index].as_py() if index is not None else None
        return ReportRowError(
            advertiser_id=self.advertiser_id,
            stat_date=self.stat_date.isoformat(),
            ad_id=ad_id if _ID_RE.fullmatch(ad_id or "") else None,
            field=field,
            problem=problem,
        )


def normalize_account_day(raw: Mapping[str, Any]) -> pa.Table:
    """The metrics table (:data:`METRICS_SCHEMA`) of one ad account and day, sorted by ``ad_id``.

    ``raw`` is what the raw asset stores::

        {"advertiser_id": "7000000000000000001", "stat_date": "2026-11-23",
         "advertiser_info": {advertiser/info item: advertiser_id, name, currency, timezone},
         "report_rows": [{"dimensions": {"ad_id": ..., "stat_time_day": "2026-11-23 00:00:00"},
                          "metrics": {"spend": "12.30", "impressions": "1000", ...}}, ...],
         "ads": [ad/get items: ad_id, ad_name, adgroup_id, ..., landing_page_url, ...]}

    Raises :class:`ReportRowError` (rules: module docstring).
    """
    answer = _validated_answer(raw)
    if answer is None:
        return METRICS_SCHEMA.empty_table()
    count = len(answer.ad_ids)
    info = answer.advertiser_info
    attributes = _joined_attributes(answer)
    urls = landing_page_urls(answer.items)
    columns = {
        "advertiser_id": pa.array([answer.advertiser_id] * count, pa.string()),
        "advertiser_name": pa.array([_text(info.get("name")) or ""] * count, pa.string()),
        "ad_id": answer.ad_ids,
        "stat_date": pa.array([answer.stat_date] * count, pa.date32()),
        **attributes,
        **_account_columns(answer),
        **_metric_columns(answer),
        "landing_page_url": urls,
        **_utm_columns(answer, attributes, urls),
    }
    table = pa.Table.from_arrays([columns[name] for name in METRICS_SCHEMA.names], schema=METRICS_SCHEMA)
    return table.take(pc.sort_indices(answer.ad_ids))


def _validated_answer(raw: Mapping[str, Any]) -> _Answer | None:
    """Step 1, validate the answer: the account and day it is for, and per report row an ad id, the
    stored day, no ad twice, and an ad/get item (if any) of the same account. None: no rows."""
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
    # TikTok's rows into columns of Python values (comprehensions over dicts: the only per-row
    # Python work); the checks and conversions follow on whole columns.
    report_rows = [_as_mapping(row) for row in raw.get("report_rows") or []]
    if not report_rows:
        return None
    dimensions = [_as_mapping(row.get("dimensions")) for row in report_rows]
    raw_ad_ids = [dimension.get("ad_id") for dimension in dimensions]
    ad_ids = _report_column(raw_ad_ids)
    answer = _Answer(
        advertiser_id,
        stat_date,
        advertiser_info,
        ad_ids,
        [_as_mapping(row.get("metrics")) for row in report_rows],
        [],
    )
    bad = _first(pc.invert(pc.fill_null(pc.match_substring_regex(ad_ids, _ID_RE2), False)))
    if bad is not None:
        raise answer.error(None, "ad_id", f"missing or not an id: {raw_ad_ids[bad]!r}")
    _check_days(answer, [dimension.get("stat_time_day") for dimension in dimensions])
    if pc.count_distinct(ad_ids).as_py() != len(ad_ids):
        seen: set[str | None] = set()
        for index, ad_id in enumerate(ad_ids.to_pylist()):
            if ad_id in seen:
                raise answer.error(index, "ad_id", "the ad appears more than once this day")
            seen.add(ad_id)
    answer.items.extend(_ad_items(raw.get("ads"), ad_ids.to_pylist()))
    item_advertiser_ids = [item.get("advertiser_id") if item else advertiser_id for item in answer.items]
    others = [] if item_advertiser_ids.count(advertiser_id) == len(ad_ids) else item_advertiser_ids
    for index, item_advertiser_id in enumerate(others):
        item_advertiser_id = _text(item_advertiser_id)
        if item_advertiser_id and item_advertiser_id != advertiser_id:
            raise answer.error(
                index, "ads.advertiser_id", f"ad/get returned this ad for advertiser {item_advertiser_id}"
            )
    return answer


def _check_days(answer: _Answer, stat_time_days: list[object]) -> None:
    """Every row is for the stored day."""
    midnight = datetime(answer.stat_date.year, answer.stat_date.month, answer.stat_date.day)
    expected = midnight.strftime(STAT_TIME_DAY_FORMAT)
    # The exact text TikTok writes needs no parsing (counted in C); anything else is parsed and compared.
    others = [] if stat_time_days.count(expected) == len(stat_time_days) else stat_time_days
    for index, stat_time_day in enumerate(others):
        if stat_time_day != expected and _parse_day(stat_time_day) != midnight:
            raise answer.error(
                index,
                "stat_time_day",
                f"row is for {stat_time_day!r}, not the stored day {answer.stat_date.isoformat()}",
            )


def _ad_items(ads: object, ad_ids: list[str]) -> list[Mapping[str, Any] | None]:
    """Each row's ad/get item, by ad id (None when ad/get had none)."""
    ads_by_id: dict[str, Mapping[str, Any]] = {}
    for item in ads if isinstance(ads, list) else []:
        item = _as_mapping(item)
        item_ad_id = item.get("ad_id")
        if type(item_ad_id) is not str or not item_ad_id.isascii():
            item_ad_id = _text(item_ad_id)
        if item_ad_id:
            # ad/get pages can overlap when ads change during paging; the first copy is as good.
            ads_by_id.setdefault(item_ad_id, item)
    return [ads_by_id.get(ad_id) for ad_id in ad_ids]


def _joined_attributes(answer: _Answer) -> dict[str, pa.Array]:
    """Step 2, join the ads: names and parent ids from the report row, else from the ad's ad/get
    item (deleted ads: the report writes "-"); found in neither, an error."""
    columns: dict[str, pa.Array] = {}
    missing: list[tuple[int, int, str]] = []  # (row, field order, field) of values found nowhere
    for order, field in enumerate(_ATTRIBUTE_FIELDS):
        column = _report_column([row_metrics.get(field) for row_metrics in answer.metrics])
        absent = pc.indices_nonzero(pc.is_null(column)).to_pylist()
        if absent:
            values = column.to_pylist()
            for index in absent:
                item = answer.items[index]
                values[index] = _ad_get_value(item.get(field)) if item else None
                if values[index] is None:
                    missing.append((index, order, field))
            column = pa.array(values, pa.string())
        columns[field] = column
    if missing:
        index, _, field = min(missing)
        if answer.items[index]:
            problem = "missing in the report row and in ad/get"
        else:
            # The usual cause: ad/get was asked without STATUS_ALL and left the deleted ad out.
            problem = "missing in the report row, and ad/get returned no such ad (fetch ads with STATUS_ALL)"
        raise answer.error(index, field, problem)
    for field in _ID_FIELDS:
        bad = _first(pc.invert(pc.match_substring_regex(columns[field], _ID_RE2)))
        if bad is not None:
            raise answer.error(bad, field, f"not an id: {columns[field][bad].as_py()!r}")
    return columns


def _account_columns(answer: _Answer) -> dict[str, pa.Array]:
    """Step 3a: the account's currency and time zone, on every row."""
    info = answer.advertiser_info
    currency = (_report_value(info.get("currency")) or "").strip().upper()
    if not _CURRENCY.fullmatch(currency):
        raise answer.error(0, "currency", f"expected an ISO 4217 code, got {currency!r}")
    timezone = account_timezone(info)
    if timezone is None:
        raise answer.error(
            0,
            "timezone",
            f"advertiser/info has no IANA time zone name in timezone ({info.get('timezone')!r})",
        )
    count = len(answer.ad_ids)
    return {
        "currency": pa.array([currency] * count, pa.string()),
        "timezone": pa.array([timezone] * count, pa.string()),
    }


def _metric_columns(answer: _Answer) -> dict[str, pa.Array]:
    """Step 3b: cost and counts, exact (core.metric_values)."""
    try:
        return {
            column: parse([row_metrics.get(field) for row_metrics in answer.metrics], field=field)
            for column, field, parse in (
                ("cost", SPEND, money_column),
                ("impressions", IMPRESSIONS, count_column),
                ("clicks", CLICKS, count_column),
                ("conversions", CONVERSIONS, count_column),
            )
        }
    except MetricParseError as error:
        raise answer.error(error.row, error.field, str(error)) from error


def _utm_columns(answer: _Answer, attributes: dict[str, pa.Array], urls: pa.Array) -> dict[str, pa.Array]:
    """Step 3c: the UTM columns, from each ad's landing page and names (core.utms)."""
    names = {field: attributes[field].to_pylist() for field in _ATTRIBUTE_FIELDS}
    utm_columns = list(
        zip(
            *map(
                _utm_values,
                urls.to_pylist(),
                names["campaign_name"],
                names["ad_name"],
                names["adgroup_name"],
                names["campaign_id"],
                names["adgroup_id"],
                answer.ad_ids.to_pylist(),
            ),
            strict=True,
        )
    )
    return {
        **{key: pa.array(values, pa.string()) for key, values in zip(UTM_KEYS, utm_columns, strict=False)},
        "utm_inferred": pa.array(utm_columns[len(UTM_KEYS)], pa.list_(pa.string())),
    }


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
