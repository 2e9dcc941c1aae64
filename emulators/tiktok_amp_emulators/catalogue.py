"""A generated, deterministic TikTok Ads account catalogue for the emulator.

The catalogue holds the entities (advertisers, campaigns, ad groups, ads) as plain dataclasses and
computes each ad's daily performance on demand from a hash of ``(seed, ad_id, day)``: nothing is
stored per day, so a report over a year of 2,000 ads costs only the days actually asked for. One
advertiser-day is computed at once with numpy (a few hundred microseconds for 2,000 ads) and kept in
a small LRU cache, because the report endpoint pages through the same days again and again.

The data is shaped to hit the importer's hard cases: deleted ads that still carry spend on the days
they ran, unicode / quoted / 1,500-character names, landing page URLs with and without UTM
parameters (macros, upper-case keys, percent-encoding, fragments, empty), ads whose landing pages
come as a list (``landing_page_urls``), ads whose tracking parameters come from TikTok's URL-parameter
builder (``utm_params``), Smart+ ads whose landing pages only the Smart+ endpoint knows, money
written with three decimals, two, or none depending on the currency, an account whose time zone is
a fixed offset (``Etc/GMT+8``), and restatements of past days (``restate``).
"""

from __future__ import annotations

import random
import re
import threading
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np

# TikTok's names of the four performance metrics (the emulator's own reading: see tiktok_server.py).
SPEND, IMPRESSIONS, CLICKS, CONVERSIONS = "spend", "impressions", "clicks", "conversion"
PERFORMANCE_METRICS = (SPEND, IMPRESSIONS, CLICKS, CONVERSIONS)

AdStatus = Literal["ENABLE", "DISABLE", "DELETE"]
ENABLE: AdStatus = "ENABLE"
DISABLE: AdStatus = "DISABLE"
DELETE: AdStatus = "DELETE"
AD_STATUSES: tuple[AdStatus, ...] = (ENABLE, DISABLE, DELETE)

ADVERTISER_STATUS_ENABLE = "STATUS_ENABLE"

# Share of an ad's live days without any delivery (budget exhausted early, audience too narrow...).
NO_DELIVERY_SHARE = 0.15
# Currencies without minor units: amounts are whole units there.
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK"})
# How many decimals report money is written with, by currency. Airbyte's
# integration_tests/expected_records.jsonl shows USD and RUB accounts' spend with three ("60.000",
# "20.000", "0.000"); the project's spec quotes TikTok's docs for two ("12.34"); for zero-decimal
# currencies whole numbers ("1520") are the emulator's guess (no public answer shows one), the
# stricter reading for a client that would expect a decimal point.
THREE_DECIMAL_MONEY_CURRENCIES = frozenset({"USD", "RUB"})


def spend_decimals(currency: str) -> int:
    """Decimals the emulator writes ``spend`` with for ``currency`` (see above for the sources)."""
    if currency in ZERO_DECIMAL_CURRENCIES:
        return 0
    return 3 if currency in THREE_DECIMAL_MONEY_CURRENCIES else 2


# Rough units per USD, so that a JPY account spends yen amounts that look like yen.
_UNITS_PER_USD = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "CAD": 1.36, "AUD": 1.5, "JPY": 150.0, "KRW": 1350.0}
# Delivery is a little higher at the weekend (Monday first).
_WEEKDAY_FACTOR = (0.95, 0.97, 1.0, 1.0, 1.03, 1.12, 1.1)
# An ad without an end date runs "forever": any day asked for is inside its life.
_OPEN_END = date.max.toordinal()
_DAILY_CACHE_SIZE = 400

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise on uint64 arrays (wraps modulo 2**64 on purpose)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed: np.ndarray = z ^ (z >> np.uint64(31))
    return mixed


def _uniforms(keys: np.ndarray, salt: int, count: int) -> list[np.ndarray]:
    """``count`` independent uniform [0, 1) draws per key for one salt (e.g. a seed and a day)."""
    salted = _mix(keys ^ np.uint64((salt * _GOLDEN) & _MASK64))
    return [
        (_mix(salted + np.uint64((k * _GOLDEN) & _MASK64)) >> np.uint64(11)).astype(np.float64)
        * (1.0 / (1 << 53))
        for k in range(1, count + 1)
    ]


def format_spend(hundredths: int, decimals: int = 2) -> str:
    """Money as TikTok writes it, with ``decimals`` decimals: 1230 -> "12.30", "12.300"; 152000 with
    none -> "1520" (an amount that is no whole number keeps two decimals)."""
    if decimals == 0 and hundredths % 100 == 0:
        return str(hundredths // 100)
    return f"{hundredths // 100}.{hundredths % 100:02d}" + "0" * max(0, decimals - 2)


class Performance(NamedTuple):
    """One row's performance metrics; spend in hundredths of the account currency (exact)."""

    spend_hundredths: int
    impressions: int
    clicks: int
    conversions: int

    def as_tiktok(self, decimals: int = 2) -> dict[str, str]:
        """The metrics as strings under TikTok's names, as the report endpoint writes them (money
        with ``decimals`` decimals: :func:`spend_decimals`)."""
        return {
            SPEND: format_spend(self.spend_hundredths, decimals),
            IMPRESSIONS: str(self.impressions),
            CLICKS: str(self.clicks),
            CONVERSIONS: str(self.conversions),
        }


@dataclass(frozen=True)
class AdvertiserSpec:
    """What to generate an advertiser from. ``timezone`` is an IANA name.

    ``api_timezone`` is what ``advertiser/info/`` writes in ``timezone`` (TikTok writes fixed
    offsets like ``Etc/GMT+8`` for some accounts); None writes the IANA name.
    """

    advertiser_id: str
    name: str
    currency: str
    timezone: str
    api_timezone: str | None = None


@dataclass(frozen=True)
class Advertiser:
    advertiser_id: str
    name: str
    currency: str
    timezone: str  # as advertiser/info/ writes it: "Etc/GMT+8" or an IANA name
    display_timezone: str  # always an IANA name
    status: str

    @property
    def spend_decimals(self) -> int:
        return spend_decimals(self.currency)


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    advertiser_id: str
    name: str
    status: AdStatus


@dataclass(frozen=True)
class AdGroup:
    adgroup_id: str
    campaign_id: str
    advertiser_id: str
    name: str
    status: AdStatus


@dataclass(frozen=True)
class Ad:
    ad_id: str
    adgroup_id: str
    campaign_id: str
    advertiser_id: str
    name: str
    landing_page_url: str  # "" for formats without a landing page, and for ads with several
    status: AdStatus
    first_day: date
    last_day: date | None  # None: still running
    # Ads with several landing pages (ad/get's landing_page_urls) have them here instead.
    landing_page_urls: tuple[str, ...] = ()
    # TikTok's URL-parameter builder: (key, value) pairs appended to the landing page at click time.
    utm_params: tuple[tuple[str, str], ...] = ()
    # Set for a Smart+ ad's creative: the Smart+ ad it belongs to (whose landing pages only
    # /smart_plus/ad/get/ serves).
    smart_plus_ad_id: str | None = None

    @property
    def landing_page(self) -> str:
        """The URL the ad's UTMs are read from: the single one, else the first non-empty of several."""
        return self.landing_page_url or next((url for url in self.landing_page_urls if url), "")


@dataclass(frozen=True, eq=False)
class DayDelivery:
    """Every ad of one advertiser with a row on one day, in ad-id order (the report's order)."""

    advertiser_id: str
    day: date
    ad_ids: tuple[str, ...]
    deleted: np.ndarray  # bool per row
    spend_hundredths: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    conversions: np.ndarray

    def __len__(self) -> int:
        return len(self.ad_ids)

    def select(self, *, live: bool, deleted: bool) -> np.ndarray:
        """Row indices of the live (not deleted) and/or deleted ads' rows."""
        if live and deleted:
            return np.arange(len(self.ad_ids))
        if not live and not deleted:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(self.deleted if deleted else ~self.deleted)

    def performance(self, rows: np.ndarray) -> list[tuple[str, Performance]]:
        """(ad_id, metrics) of the given rows; one numpy-to-Python conversion per column."""
        spend = self.spend_hundredths[rows].tolist()
        impressions = self.impressions[rows].tolist()
        clicks = self.clicks[rows].tolist()
        conversions = self.conversions[rows].tolist()
        ids = self.ad_ids
        return [
            (ids[row], Performance(spend[i], impressions[i], clicks[i], conversions[i]))
            for i, row in enumerate(rows.tolist())
        ]

    def total(self) -> Performance:
        """Exact sums over every row, deleted ads included (what the account-level report shows)."""
        return Performance(
            int(self.spend_hundredths.sum()),
            int(self.impressions.sum()),
            int(self.clicks.sum()),
            int(self.conversions.sum()),
        )


@dataclass(frozen=True, eq=False)
class _AdvertiserBook:
    """One advertiser's ads as columns, in ad-id order, for vectorised daily metrics."""

    ad_ids: tuple[str, ...]
    positions: dict[str, int]
    keys: np.ndarray  # uint64 ad ids
    first_day: np.ndarray  # ordinals
    last_day: np.ndarray  # ordinals; _OPEN_END when still running
    deleted: np.ndarray  # bool, mutable through Catalogue.set_ad_status
    daily_spend: np.ndarray  # typical spend per day, in hundredths
    cpm: np.ndarray  # cost per 1,000 impressions, in hundredths
    ctr: np.ndarray
    cvr: np.ndarray
    spend_step: int  # 100 for zero-decimal currencies: whole units only


class Catalogue:
    """The entities of every advertiser and their daily performance, computed on demand.

    ``daily_metrics`` is a pure function of ``(seed, ad_id, day)`` plus any ``restate`` override,
    so the same catalogue answers the same way in every run. Thread-safe: the emulator serves
    requests from several threads while a test restates days.
    """

    def __init__(
        self,
        *,
        seed: int,
        advertisers: dict[str, Advertiser],
        campaigns: dict[str, Campaign],
        adgroups: dict[str, AdGroup],
        ads: dict[str, Ad],
    ) -> None:
        self.seed = seed
        self.advertisers = advertisers
        self.campaigns = campaigns
        self.adgroups = adgroups
        self.ads = ads
        self._lock = threading.RLock()
        self._books = {advertiser_id: self._book(advertiser_id) for advertiser_id in advertisers}
        # (advertiser_id, day) -> {position: restated metrics, or None when the row disappears}
        self._restated: dict[tuple[str, date], dict[int, Performance | None]] = {}
        self._days: OrderedDict[tuple[str, date], DayDelivery] = OrderedDict()

    # ----- entities

    def ads_of(self, advertiser_id: str) -> list[Ad]:
        """The advertiser's ads in ad-id order, deleted ones included."""
        return [self.ads[ad_id] for ad_id in self._books[advertiser_id].ad_ids]

    def ad_count(self, advertiser_id: str) -> int:
        """How many ads the advertiser has, deleted ones included."""
        return len(self._books[advertiser_id].ad_ids)

    def adgroups_of(self, advertiser_id: str) -> list[AdGroup]:
        return sorted(
            (group for group in self.adgroups.values() if group.advertiser_id == advertiser_id),
            key=lambda group: group.adgroup_id,
        )

    def campaigns_of(self, advertiser_id: str) -> list[Campaign]:
        return sorted(
            (campaign for campaign in self.campaigns.values() if campaign.advertiser_id == advertiser_id),
            key=lambda campaign: campaign.campaign_id,
        )

    def set_ad_status(self, ad_id: str, status: AdStatus) -> None:
        """Change an ad's status, e.g. TikTok deleting an old ad between two imports."""
        if status not in AD_STATUSES:
            raise ValueError(f"unknown ad status {status!r}")
        with self._lock:
            ad = self.ads[ad_id]
            self.ads[ad_id] = replace(ad, status=status)
            book = self._books[ad.advertiser_id]
            book.deleted[book.positions[ad_id]] = status == DELETE
            for key in [key for key in self._days if key[0] == ad.advertiser_id]:
                del self._days[key]

    # ----- performance

    def day_delivery(self, advertiser_id: str, day: date) -> DayDelivery:
        """All rows of one advertiser-day (restatements applied), cached in a small LRU."""
        key = (advertiser_id, day)
        with self._lock:
            cached = self._days.get(key)
            if cached is not None:
                self._days.move_to_end(key)
                return cached
            delivery = self._compute_day(advertiser_id, day)
            self._days[key] = delivery
            if len(self._days) > _DAILY_CACHE_SIZE:
                self._days.popitem(last=False)
            return delivery

    def daily_metrics(self, ad_id: str, day: date) -> dict[str, str] | None:
        """One ad's metrics on one day as TikTok strings, or None when it had no delivery."""
        ad = self.ads[ad_id]
        delivery = self.day_delivery(ad.advertiser_id, day)
        row = _row_of(delivery, ad_id)
        if row is None:
            return None
        decimals = self.advertisers[ad.advertiser_id].spend_decimals
        return delivery.performance(np.array([row]))[0][1].as_tiktok(decimals)

    def advertiser_day_totals(self, advertiser_id: str, day: date) -> dict[str, str]:
        """The account's total for a day over every ad, deleted ones included (zeros without delivery)."""
        decimals = self.advertisers[advertiser_id].spend_decimals
        return self.day_delivery(advertiser_id, day).total().as_tiktok(decimals)

    def restate(self, ad_id: str, day: date, metrics: dict[str, str] | None) -> None:
        """Override one ad-day as TikTok does when it corrects past data.

        ``metrics`` holds TikTok metric names and strings; names left out keep their current value
        (zero if the ad had no delivery that day). None makes the ad-day disappear from reports.
        """
        ad = self.ads[ad_id]
        position = self._books[ad.advertiser_id].positions[ad_id]
        if metrics is not None:
            unknown = set(metrics) - set(PERFORMANCE_METRICS)
            if unknown:
                raise ValueError(
                    f"restate: only {PERFORMANCE_METRICS} can be restated, got {sorted(unknown)}"
                )
        with self._lock:
            restated: Performance | None = None
            if metrics is not None:
                current = self.daily_metrics(ad_id, day) or Performance(0, 0, 0, 0).as_tiktok()
                merged = {**current, **metrics}
                restated = Performance(
                    _parse_spend(merged[SPEND]),
                    _parse_count(IMPRESSIONS, merged[IMPRESSIONS]),
                    _parse_count(CLICKS, merged[CLICKS]),
                    _parse_count(CONVERSIONS, merged[CONVERSIONS]),
                )
            self._restated.setdefault((ad.advertiser_id, day), {})[position] = restated
            self._days.pop((ad.advertiser_id, day), None)

    def _compute_day(self, advertiser_id: str, day: date) -> DayDelivery:
        book = self._books[advertiser_id]
        ordinal = day.toordinal()
        no_delivery, level, reach, engagement = _uniforms(book.keys, self.seed * 1_000_003 + ordinal, 4)
        delivers = (
            (book.first_day <= ordinal) & (ordinal <= book.last_day) & (no_delivery >= NO_DELIVERY_SHARE)
        )
        step = book.spend_step
        wanted = book.daily_spend * _WEEKDAY_FACTOR[day.weekday()] * (0.35 + 1.3 * level)
        spend = np.maximum(step, np.round(wanted / step) * step).astype(np.int64)
        impressions = np.maximum(1, np.floor(spend / book.cpm * 1000.0 * (0.8 + 0.4 * reach))).astype(
            np.int64
        )
        clicks = np.floor(impressions * book.ctr * (0.7 + 0.6 * engagement)).astype(np.int64)
        conversions = np.minimum(clicks, np.floor(clicks * book.cvr * (0.5 + reach) + level)).astype(np.int64)
        for position, restated in self._restated.get((advertiser_id, day), {}).items():
            delivers[position] = restated is not None
            if restated is not None:
                spend[position], impressions[position], clicks[position], conversions[position] = restated
        rows = np.flatnonzero(delivers)
        return DayDelivery(
            advertiser_id=advertiser_id,
            day=day,
            ad_ids=tuple(book.ad_ids[row] for row in rows.tolist()),
            deleted=book.deleted[rows],
            spend_hundredths=spend[rows],
            impressions=impressions[rows],
            clicks=clicks[rows],
            conversions=conversions[rows],
        )

    def _book(self, advertiser_id: str) -> _AdvertiserBook:
        ads = sorted(
            (ad for ad in self.ads.values() if ad.advertiser_id == advertiser_id), key=lambda ad: ad.ad_id
        )
        currency = self.advertisers[advertiser_id].currency
        units = _UNITS_PER_USD.get(currency, 1.0)
        keys = np.array([int(ad.ad_id) for ad in ads], dtype=np.uint64)
        # The ad's economics come from the same hash with a salt no day can have.
        budget, cpm, ctr, cvr = _uniforms(keys, self.seed * 1_000_003 - 1, 4)
        return _AdvertiserBook(
            ad_ids=tuple(ad.ad_id for ad in ads),
            positions={ad.ad_id: position for position, ad in enumerate(ads)},
            keys=keys,
            first_day=np.array([ad.first_day.toordinal() for ad in ads], dtype=np.int64),
            last_day=np.array(
                [_OPEN_END if ad.last_day is None else ad.last_day.toordinal() for ad in ads], dtype=np.int64
            ),
            deleted=np.array([ad.status == DELETE for ad in ads], dtype=bool),
            # $5 .. $400 a day, log-uniform: a few big spenders, many small ones.
            daily_spend=np.exp(np.log(500.0) + budget * np.log(80.0)) * units,
            cpm=(200.0 + 1000.0 * cpm) * units,  # $2 .. $12 CPM
            ctr=0.003 + 0.022 * ctr,  # 0.3% .. 2.5%
            cvr=0.01 + 0.07 * cvr,  # 1% .. 8% of clicks
            spend_step=100 if currency in ZERO_DECIMAL_CURRENCIES else 1,
        )


def _row_of(delivery: DayDelivery, ad_id: str) -> int | None:
    """The row of ``ad_id`` in a day's delivery (rows are in ad-id order), or None."""
    ids = delivery.ad_ids
    row = bisect_left(ids, ad_id)
    return row if row < len(ids) and ids[row] == ad_id else None


def _parse_spend(value: str) -> int:
    try:
        hundredths = Decimal(value) * 100
    except InvalidOperation as error:
        raise ValueError(f"restate: spend {value!r} is not a number") from error
    if hundredths < 0 or hundredths != hundredths.to_integral_value():
        raise ValueError(f"restate: spend {value!r} must be >= 0 with at most two decimals")
    return int(hundredths)


def _parse_count(name: str, value: str) -> int:
    if not re.fullmatch(r"\d+", value):
        raise ValueError(f"restate: {name} {value!r} must be a non-negative integer")
    return int(value)


# ----- generation

DEFAULT_ADVERTISERS = (
    AdvertiserSpec(
        "7000000000000000001", "Acme Outdoor US", "USD", "America/Los_Angeles", api_timezone="Etc/GMT+8"
    ),
    AdvertiserSpec("7000000000000000002", "Sakura Cosmetics JP", "JPY", "Asia/Tokyo"),
)

LONG_NAME_LENGTH = 1500

_CAMPAIGN_THEMES = (
    "Spring Sale",
    "Always-On Prospecting",
    "Retargeting – Cart Abandoners",
    "Black Friday / Cyber Monday",
    "Été – Soldes 🎉",
    'The "Big" Weekend',
    "O'Neill x Partners, Q3",
    "春の新作キャンペーン ✨",
    "App Installs (iOS 17+)",
    "Brand Awareness — Video Views",
)
_AUDIENCES = (
    "Broad 18-54",
    "Lookalike 1%",
    "Interest: Hiking",
    "Retarget 30d",
    "Custom Audience «VIP»",
    "Women 25-44",
)
_PLACEMENTS = ("Auto placement", "TikTok only", "Pangle", "Search ads")
_CREATIVES = (
    "UGC Unboxing",
    "Creator Review 15s",
    "Product Demo",
    'Spark Ad "@acme" duet',
    "Été – Soldes 🎉",
    "  padded name  ",
    "Back\\slash / and, comma",
    "新作リップ ✨ 30秒",
    "Émoji 🔥🔥🔥 Hook",
)
_PAGES = ("products/tent-2p", "collections/summer", "", "blog/how-to-pack", "p/lip-tint-03", "landing/offer")


def generate_catalogue(
    *,
    seed: int = 7,
    advertisers: list[AdvertiserSpec] | None = None,
    ads_per_advertiser: int = 40,
    start: date = date(2025, 1, 1),
) -> Catalogue:
    """A deterministic catalogue: the same arguments always give the same ids, names and metrics.

    Each advertiser gets about sqrt(ads)/2 campaigns (at least 2) of 2 to 4 ad groups; exactly
    10% of its ads are DELETE and 10% DISABLE (at least one each when it has 10 ads or more), and
    when possible one whole ad group is deleted so that its parent lookups must include deleted
    entities too. Three running ads in four start on ``start``, the others within 90 days; deleted
    and disabled ads stop after a while (all within ``start``'s year), running ads never stop.
    """
    rng = random.Random(seed)
    specs = list(DEFAULT_ADVERTISERS if advertisers is None else advertisers)
    used_ids: set[str] = {spec.advertiser_id for spec in specs}

    def new_id(prefix: str) -> str:
        while True:
            candidate = prefix + "".join(str(rng.randrange(10)) for _ in range(19 - len(prefix)))
            if candidate not in used_ids:
                used_ids.add(candidate)
                return candidate

    all_advertisers: dict[str, Advertiser] = {}
    campaigns: dict[str, Campaign] = {}
    adgroups: dict[str, AdGroup] = {}
    ads: dict[str, Ad] = {}
    for index, spec in enumerate(specs):
        _check_spec(spec)
        all_advertisers[spec.advertiser_id] = Advertiser(
            advertiser_id=spec.advertiser_id,
            name=spec.name,
            currency=spec.currency,
            timezone=spec.api_timezone or spec.timezone,
            display_timezone=spec.timezone,
            status=ADVERTISER_STATUS_ENABLE,
        )
        domain = "https://www." + re.sub(r"[^a-z0-9]+", "-", spec.name.lower()).strip("-") + ".example"
        campaign_count = max(2, round(ads_per_advertiser**0.5 / 2))
        spec_campaigns = [
            (new_id("18"), f"{_CAMPAIGN_THEMES[(index + c) % len(_CAMPAIGN_THEMES)]} {start.year + c // 10}")
            for c in range(campaign_count)
        ]
        groups: list[tuple[str, str]] = []  # (adgroup_id, campaign_id)
        group_names: dict[str, str] = {}
        for campaign_id, _ in spec_campaigns:
            for _ in range(rng.randint(2, 4)):
                adgroup_id = new_id("17")
                groups.append((adgroup_id, campaign_id))
                group_names[adgroup_id] = f"{rng.choice(_AUDIENCES)} | {rng.choice(_PLACEMENTS)}"
        # Every ad group gets one ad before any gets a second, then the rest at random.
        members: dict[str, list[int]] = {adgroup_id: [] for adgroup_id, _ in groups}
        for ad_index in range(ads_per_advertiser):
            group = groups[ad_index] if ad_index < len(groups) else rng.choice(groups)
            members[group[0]].append(ad_index)
        statuses = _ad_statuses(rng, ads_per_advertiser, members)
        campaign_of_group = dict(groups)
        campaign_names = dict(spec_campaigns)
        spec_ads: list[Ad] = []
        for adgroup_id, ad_indexes in members.items():
            for ad_index in ad_indexes:
                ad_id = new_id("17")
                campaign_id = campaign_of_group[adgroup_id]
                status = statuses[ad_index]
                first_day, last_day = _life(rng, status, start)
                spec_ads.append(
                    Ad(
                        ad_id=ad_id,
                        adgroup_id=adgroup_id,
                        campaign_id=campaign_id,
                        advertiser_id=spec.advertiser_id,
                        name=f"{rng.choice(_CREATIVES)} #{ad_index + 1}",
                        landing_page_url=_landing_page_url(rng, domain, campaign_names[campaign_id], ad_id),
                        status=status,
                        first_day=first_day,
                        last_day=last_day,
                    )
                )
        # One ad per advertiser (and its first campaign) carries a name of 1,500 characters.
        if spec_ads:
            spec_ads[0] = replace(spec_ads[0], name=_long_name(spec_ads[0].name))
        spec_campaigns[0] = (spec_campaigns[0][0], _long_name(spec_campaigns[0][1]))
        for ad in spec_ads:
            ads[ad.ad_id] = _as_smart_plus(_with_utm_params(_with_several_landing_pages(ad)))
        for adgroup_id, campaign_id in groups:
            adgroups[adgroup_id] = AdGroup(
                adgroup_id=adgroup_id,
                campaign_id=campaign_id,
                advertiser_id=spec.advertiser_id,
                name=group_names[adgroup_id],
                status=_parent_status([statuses[i] for i in members[adgroup_id]]),
            )
        for campaign_id, name in spec_campaigns:
            child_statuses = [statuses[i] for g, c in groups if c == campaign_id for i in members[g]]
            campaigns[campaign_id] = Campaign(
                campaign_id=campaign_id,
                advertiser_id=spec.advertiser_id,
                name=name,
                status=_parent_status(child_statuses),
            )
    return Catalogue(seed=seed, advertisers=all_advertisers, campaigns=campaigns, adgroups=adgroups, ads=ads)


def _check_spec(spec: AdvertiserSpec) -> None:
    if not re.fullmatch(r"\d{19}", spec.advertiser_id):
        raise ValueError(f"advertiser id must be 19 digits, got {spec.advertiser_id!r}")
    if not re.fullmatch(r"[A-Z]{3}", spec.currency):
        raise ValueError(f"currency must be an ISO 4217 code, got {spec.currency!r}")
    ZoneInfo(spec.timezone)  # raises for names that are not IANA zones


def _ad_statuses(rng: random.Random, count: int, members: dict[str, list[int]]) -> list[AdStatus]:
    """Exactly 10% DELETE and 10% DISABLE, one whole ad group deleted when it fits in the 10%."""
    deleted_count = round(count * 0.1)
    disabled_count = round(count * 0.1)
    statuses: list[AdStatus] = [ENABLE] * count
    candidates = [ads for ads in members.values() if 0 < len(ads) <= deleted_count]
    whole_group = min(candidates, key=len) if candidates else []
    for ad_index in whole_group:
        statuses[ad_index] = DELETE
    in_whole_group = set(whole_group)
    others = [i for i in range(count) if i not in in_whole_group]
    rng.shuffle(others)
    rest = deleted_count - len(whole_group)
    for ad_index in others[:rest]:
        statuses[ad_index] = DELETE
    for ad_index in others[rest : rest + disabled_count]:
        statuses[ad_index] = DISABLE
    return statuses


def _parent_status(child_statuses: list[AdStatus]) -> AdStatus:
    """A campaign or ad group is deleted when all its ads are, paused when none runs."""
    if child_statuses and all(status == DELETE for status in child_statuses):
        return DELETE
    if child_statuses and ENABLE not in child_statuses:
        return DISABLE
    return ENABLE


def _life(rng: random.Random, status: AdStatus, start: date) -> tuple[date, date | None]:
    """First and last day of delivery: running ads never stop, the others stopped in the past."""
    if status == DELETE:
        first = start + timedelta(days=rng.randint(0, 150))
        return first, first + timedelta(days=rng.randint(10, 90))
    if status == DISABLE:
        first = start + timedelta(days=rng.randint(0, 120))
        return first, first + timedelta(days=rng.randint(14, 200))
    first = start if rng.random() < 0.75 else start + timedelta(days=rng.randint(1, 90))
    return first, None


def _landing_page_url(rng: random.Random, domain: str, campaign_name: str, ad_id: str) -> str:
    """A landing page URL of one of the shapes advertisers really use (weights sum to 100)."""
    page = f"{domain}/{rng.choice(_PAGES)}"
    slug = re.sub(r"[^a-z0-9]+", "_", campaign_name.lower()).strip("_") or "campaign"
    shape = rng.randrange(100)
    if shape < 40:
        return f"{page}?utm_source=tiktok&utm_medium=paid_social&utm_campaign={slug}&utm_content={ad_id}"
    if shape < 55:
        return (
            f"{page}?utm_source=tiktok&utm_medium=cpc&utm_campaign=__CAMPAIGN_NAME__"
            "&utm_content=__CID_NAME__&utm_id=__CAMPAIGN_ID__&ad=__CID__"
        )
    if shape < 63:
        return f"{page}?UTM_SOURCE=TikTok&UTM_MEDIUM=Paid_Social&Utm_Campaign={slug.upper()}"
    if shape < 71:
        return (
            f"{page}?utm_source=tiktok&utm_campaign=%C3%89t%C3%A9%20%E2%80%93%20Soldes&utm_term=tent%2Bstove"
        )
    if shape < 75:
        return f"{domain}/#/product/42?utm_source=tiktok&utm_campaign={slug}"  # UTMs after the fragment
    if shape < 79:
        return f"{page}?utm_source=tiktok&utm_campaign={slug}#reviews"
    if shape < 89:
        return page
    return ""


# About one ad in seven carries its landing page in landing_page_urls (an empty entry first for
# half of them), chosen by its id so that no draw of the generator changes for the other ads.
_SEVERAL_LANDING_PAGES_EVERY = 7


def _with_several_landing_pages(ad: Ad) -> Ad:
    number = int(ad.ad_id)
    if number % _SEVERAL_LANDING_PAGES_EVERY != 3 or not ad.landing_page_url:
        return ad
    urls = (
        ("", ad.landing_page_url) if (number // _SEVERAL_LANDING_PAGES_EVERY) % 2 else (ad.landing_page_url,)
    )
    return replace(ad, landing_page_url="", landing_page_urls=(*urls, ad.landing_page_url + "#second"))


# About one ad in five carries utm_params (TikTok's URL-parameter builder: singer-io/tap-tiktok-ads
# schemas/ads.json, the SDK's AdcreateUtmParams), chosen by its id. Half of them have a landing page
# without a query, as advertisers who build their parameters in TikTok write it; the other half keep
# theirs, so that a key in both is met too.
_UTM_PARAMS_EVERY = 5
UTM_PARAMS = (
    ("utm_source", "tiktok_ads"),
    ("utm_medium", "paid_social_builder"),
    ("utm_campaign", "__CAMPAIGN_NAME__"),
    ("utm_content", "__CID__"),
)


def _with_utm_params(ad: Ad) -> Ad:
    number = int(ad.ad_id)
    if number % _UTM_PARAMS_EVERY != 1 or ad.landing_page_urls or not ad.landing_page_url:
        return ad
    url = ad.landing_page_url
    if (number // _UTM_PARAMS_EVERY) % 2 == 0:
        url = url.split("?", 1)[0].split("#", 1)[0]
    return replace(ad, landing_page_url=url, utm_params=UTM_PARAMS)


# About one ad in eleven is a Smart+ ad's creative (by its id): its Smart+ ad (id "19" + the rest of
# the creative's) holds the landing pages and the parameters (ad_configuration.utm_params); half of
# them have a landing page without a query.
_SMART_PLUS_EVERY = 11


def _as_smart_plus(ad: Ad) -> Ad:
    number = int(ad.ad_id)
    if number % _SMART_PLUS_EVERY != 4 or not ad.landing_page:
        return ad
    urls = ad.landing_page_urls or (ad.landing_page_url,)
    if (number // _SMART_PLUS_EVERY) % 2 == 0:
        urls = tuple(url.split("?", 1)[0].split("#", 1)[0] for url in urls)
    return replace(
        ad,
        landing_page_url="" if ad.landing_page_urls else urls[0],
        landing_page_urls=urls if ad.landing_page_urls else (),
        utm_params=UTM_PARAMS,
        smart_plus_ad_id="19" + ad.ad_id[2:],
    )


def _long_name(prefix: str) -> str:
    filler = " – lorem ipsum dolor sit amet, «consectetur» adipiscing élit 🎉"
    return (prefix + filler * (LONG_NAME_LENGTH // len(filler) + 1))[:LONG_NAME_LENGTH]
