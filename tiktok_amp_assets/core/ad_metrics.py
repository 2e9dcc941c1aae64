"""Normalization of one ad account's day of TikTok data into validated ad-day rows.

The raw asset stores, per ad account and day, what TikTok returned (see :func:`normalize_account_day`
for the shape). This module turns it into :class:`AdDayMetrics`, one row per ad that delivered that
day, with exact metric values and the ad's UTM values. Rules:

- Every report row must be for the stored day (``stat_time_day`` = ``stat_date 00:00:00``) and
  carry an ``ad_id``; an ad appearing twice in one day is an error, not something to add up.
- Names and parent ids (``ad_name``, ``adgroup_id``, ``adgroup_name``, ``campaign_id``,
  ``campaign_name``) come from the report row. For deleted ads TikTok may send them as ``"-"`` or
  ``""``; then the ad's ``ad/get`` item supplies them (there only an empty value counts as absent,
  since ``ad/get`` returns the stored name as it is). If neither has one, the row is an error.
- Performance metrics (``spend``, ``impressions``, ``clicks``, ``conversion``) that are absent or
  written as a missing-value marker (``"-"``, ``""``, ``"N/A"``, ...) are ``None``, meaning "TikTok did
  not report it", never zero. Anything else that is not a plain number is an error.
- ``landing_page_url`` comes from the ``ad/get`` item; when it is absent or blank, the first usable
  entry of the item's ``landing_page_urls`` (ads with several landing pages carry them there: an
  array of URLs, or of ``{"landing_page_url": ...}`` objects as in the SDK's models; a lone string
  counts as one): the first http(s) URL with a host, else the first non-blank entry; ``None`` when
  neither field has one. The UTMs follow :mod:`tiktok_amp_assets.core.utms`.
- Currency: the account's (``advertiser/info`` ``currency``); a ``currency`` on the report row,
  which the client no longer asks for (no public schema lists it as a report metric), is read
  first when present, as in raw files stored before.
- Time zone: the account's ``timezone`` (the zone its report days are in, e.g. ``Etc/GMT+8``) if it is
  an IANA name, else its ``display_timezone`` if that is one (no longer asked for, present in raw
  files stored before), else an error.

Every error is a :class:`ReportRowError` naming the advertiser, the day, the ad (when known) and the
field, so a failed run says which account and ad to look at.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from tiktok_amp_assets.core.metric_values import (
    MAX_COUNT,
    MetricParseError,
    MetricTotals,
    parse_count,
    parse_money,
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
from tiktok_amp_assets.core.utms import UTM_KEYS, is_web_url, landing_page_utms

_UTM_KEY_SET = frozenset(UTM_KEYS)

# TikTok ids are 64-bit numbers written as strings; letters are allowed so ids from other sources
# or future formats still pass, but never anything that would need escaping.
_ID_PATTERN = r"^[0-9A-Za-z]+$"
_ID_RE = re.compile(r"[0-9A-Za-z]+")  # used with fullmatch: "$" would let a trailing newline in
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
EntityId = Annotated[str, StringConstraints(pattern=_ID_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1)]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

# Attribute metrics the report carries and ad/get can stand in for, in the order they are checked.
_ATTRIBUTE_FIELDS = ("ad_name", "adgroup_id", "adgroup_name", "campaign_id", "campaign_name")
_ID_FIELDS = frozenset({"adgroup_id", "campaign_id"})


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


class AdDayMetrics(BaseModel):
    """One ad's metrics for one account-local day, validated and ready to become an event."""

    # strict: built from parsed values only; from_record() relaxes it to read JSON text back.
    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    advertiser_id: EntityId
    advertiser_name: str
    ad_id: EntityId
    stat_date: date
    ad_name: Name
    adgroup_id: EntityId
    adgroup_name: Name
    campaign_id: EntityId
    campaign_name: Name
    currency: CurrencyCode
    timezone: str
    cost: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] | None
    # 64-bit like TikTok's counters, so stored rows read back exactly (core.json_codec).
    impressions: Annotated[int, Field(ge=0, le=MAX_COUNT)] | None
    clicks: Annotated[int, Field(ge=0, le=MAX_COUNT)] | None
    conversions: Annotated[int, Field(ge=0, le=MAX_COUNT)] | None
    landing_page_url: str | None
    utm_source: Name
    utm_medium: Name
    utm_campaign: Name
    utm_content: Name
    utm_inferred: list[str]

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if not is_iana_timezone(value):
            raise ValueError(f"{value!r} is not an IANA time zone name")
        return value

    @field_validator("utm_inferred")
    @classmethod
    def _utm_keys_sorted(cls, value: list[str]) -> list[str]:
        if not value:  # the common case: every UTM came from the URL
            return value
        unknown = set(value) - _UTM_KEY_SET
        if unknown:
            raise ValueError(f"not UTM keys: {sorted(unknown)}")
        return sorted(set(value))

    def totals(self) -> MetricTotals:
        """The four metrics, a missing one counted as zero (for sums and corrections)."""
        return MetricTotals(
            cost=self.cost if self.cost is not None else Decimal(0),
            impressions=self.impressions or 0,
            clicks=self.clicks or 0,
            conversions=self.conversions or 0,
        )

    def to_record(self) -> dict[str, Any]:
        """A JSON-safe dict: Decimal as its exact string, the date as ISO text."""
        return self.model_dump(mode="json")

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AdDayMetrics:
        """The row :meth:`to_record` wrote, exactly (``"12.30"`` comes back as ``Decimal("12.30")``)."""
        return cls.model_validate(dict(record), strict=False)


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
    return value if isinstance(value, Mapping) else {}


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


def landing_page(ad_item: Mapping[str, Any]) -> str | None:
    """The ad's landing page URL: ``landing_page_url``, else the first usable of ``landing_page_urls``."""
    single = _ad_get_value(ad_item.get("landing_page_url"))
    if single is not None:
        return single
    several = ad_item.get("landing_page_urls")
    entries = [several] if isinstance(several, str) else several if isinstance(several, list) else []
    candidates = (entry.get("landing_page_url") if isinstance(entry, Mapping) else entry for entry in entries)
    texts = [
        text for candidate in candidates if isinstance(candidate, str) and (text := _ad_get_value(candidate))
    ]
    # The first web address; text that is no URL only when there is nothing better.
    return next((text for text in texts if is_web_url(text)), texts[0] if texts else None)


def normalize_account_day(raw: Mapping[str, Any]) -> list[AdDayMetrics]:
    """One :class:`AdDayMetrics` per report row of one ad account and day, sorted by ``ad_id``.

    ``raw`` is what the raw asset stores::

        {"advertiser_id": "7000000000000000001", "stat_date": "2026-11-23",
         "advertiser_info": {advertiser/info item: advertiser_id, name, currency, timezone},
         "report_rows": [{"dimensions": {"ad_id": ..., "stat_time_day": "2026-11-23 00:00:00"},
                          "metrics": {"spend": "12.30", "impressions": "1000", ...}}, ...],
         "ads": [ad/get items: ad_id, ad_name, adgroup_id, ..., landing_page_url(s), ...]}

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
        item_ad_id = _text(item.get("ad_id"))
        if item_ad_id:
            # ad/get pages can overlap when ads change during paging; the first copy is as good.
            ads_by_id.setdefault(item_ad_id, item)

    midnight = datetime(stat_date.year, stat_date.month, stat_date.day)
    expected_stat_time_day = midnight.strftime(STAT_TIME_DAY_FORMAT)
    rows: list[AdDayMetrics] = []
    seen_ad_ids: set[str] = set()
    for report_row in raw.get("report_rows") or []:
        report_row = _as_mapping(report_row)
        dimensions = _as_mapping(report_row.get("dimensions"))
        metrics = _as_mapping(report_row.get("metrics"))

        ad_id = _report_value(dimensions.get("ad_id"))
        if not ad_id or not _ID_RE.fullmatch(ad_id):
            raise ReportRowError(
                **where,
                ad_id=None,
                field="ad_id",
                problem=f"missing or not an id: {dimensions.get('ad_id')!r}",
            )
        stat_time_day = dimensions.get("stat_time_day")
        # The exact text TikTok writes needs no parsing; anything else is parsed and compared.
        if stat_time_day != expected_stat_time_day and _parse_day(stat_time_day) != midnight:
            raise ReportRowError(
                **where,
                ad_id=ad_id,
                field="stat_time_day",
                problem=(
                    f"row is for {dimensions.get('stat_time_day')!r}, "
                    f"not the stored day {stat_date.isoformat()}"
                ),
            )
        if ad_id in seen_ad_ids:
            raise ReportRowError(
                **where, ad_id=ad_id, field="ad_id", problem="the ad appears more than once this day"
            )
        seen_ad_ids.add(ad_id)

        ad_item = ads_by_id.get(ad_id, {})
        if ad_item:
            item_advertiser_id = _text(ad_item.get("advertiser_id"))
            if item_advertiser_id and item_advertiser_id != advertiser_id:
                raise ReportRowError(
                    **where,
                    ad_id=ad_id,
                    field="ads.advertiser_id",
                    problem=f"ad/get returned this ad for advertiser {item_advertiser_id}",
                )

        attributes: dict[str, str] = {}
        for field in _ATTRIBUTE_FIELDS:
            value = _report_value(metrics.get(field)) or _ad_get_value(ad_item.get(field))
            if value is None:
                if ad_item:
                    problem = "missing in the report row and in ad/get"
                else:
                    # The usual cause: ad/get was asked without STATUS_ALL and left the deleted ad out.
                    problem = (
                        "missing in the report row, and ad/get returned no such ad "
                        "(fetch ads with STATUS_ALL)"
                    )
                raise ReportRowError(**where, ad_id=ad_id, field=field, problem=problem)
            if field in _ID_FIELDS and not _ID_RE.fullmatch(value):
                raise ReportRowError(**where, ad_id=ad_id, field=field, problem=f"not an id: {value!r}")
            attributes[field] = value

        currency = (_report_value(metrics.get("currency")) or account_currency or "").strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise ReportRowError(
                **where, ad_id=ad_id, field="currency", problem=f"expected an ISO 4217 code, got {currency!r}"
            )
        if timezone is None:
            raise ReportRowError(
                **where,
                ad_id=ad_id,
                field="timezone",
                problem=(
                    "advertiser/info has no IANA time zone name in timezone "
                    f"({advertiser_info.get('timezone')!r}) or display_timezone "
                    f"({advertiser_info.get('display_timezone')!r})"
                ),
            )

        try:
            cost = parse_money(metrics.get(SPEND), field=SPEND)
            impressions = parse_count(metrics.get(IMPRESSIONS), field=IMPRESSIONS)
            clicks = parse_count(metrics.get(CLICKS), field=CLICKS)
            conversions = parse_count(metrics.get(CONVERSIONS), field=CONVERSIONS)
        except MetricParseError as exc:
            raise ReportRowError(**where, ad_id=ad_id, field=exc.field, problem=str(exc)) from exc

        landing_page_url = landing_page(ad_item)
        utms = landing_page_utms(
            landing_page_url,
            campaign_name=attributes["campaign_name"],
            ad_name=attributes["ad_name"],
            adgroup_name=attributes["adgroup_name"],
            campaign_id=attributes["campaign_id"],
            adgroup_id=attributes["adgroup_id"],
            ad_id=ad_id,
        )
        try:
            rows.append(
                AdDayMetrics(
                    advertiser_id=advertiser_id,
                    advertiser_name=advertiser_name,
                    ad_id=ad_id,
                    stat_date=stat_date,
                    currency=currency,
                    timezone=timezone,
                    cost=cost,
                    impressions=impressions,
                    clicks=clicks,
                    conversions=conversions,
                    landing_page_url=landing_page_url,
                    utm_source=utms.utm_source,
                    utm_medium=utms.utm_medium,
                    utm_campaign=utms.utm_campaign,
                    utm_content=utms.utm_content,
                    utm_inferred=sorted(utms.inferred),
                    **attributes,
                )
            )
        except ValidationError as exc:
            # The checks above should catch everything; this keeps the account/day/ad in the message
            # if a model rule is ever stricter than them.
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "row"
            raise ReportRowError(**where, ad_id=ad_id, field=field, problem=first["msg"]) from exc

    return sorted(rows, key=lambda row: row.ad_id)
