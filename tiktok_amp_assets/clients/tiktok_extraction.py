"""One TikTok extraction: every ad-day of an account's days, whole, window by window.

The raw asset calls :class:`TikTokExtraction` and stores what it yields; everything between a range
of days and TikTok's answers happens here:

1. **Windows.** The range is cut into 30-day report windows here and nowhere else
   (``core/report_windows.py``; the client asks for exactly one window at a time).
2. **Account totals** of the window (``AUCTION_ADVERTISER``): TikTok's own sums per day, fetched
   first, against which the ad rows are checked here and reconciled later (``core/reconciliation.py``).
3. **Ad rows** of the window, every page, deleted ads included (the client's ``STATUS_ALL`` filter).
4. **Narrowing.** TikTok may refuse a query as too large (code 40067, "please narrow the date
   range"): that query is asked again in halves, down to single days; a day TikTok still refuses
   fails the account, naming it and the day.
5. **Cut answers.** TikTok answers a report for a limited number of ads per query and leaves the
   others out without saying so (10,000 ads, 20,000 in CHUNK mode, per the SDK's ReportingApi
   notes; bigger accounts must filter by campaign, ad group or ad ids, at most 100 per query). The
   cap is never assumed here: an answer is suspected cut when the ad rows of a day fall short of the
   account total of that day, when one answer holds as many distinct ads as an answer that was cut
   before in this run, or when the account has as many ads as an account whose answer was cut (the
   cap counts the ads in a query's scope, delivering or not, so a cut answer may hold fewer ads
   than the cap). A suspected window is asked again in parts small enough to fit: the
   account's ads (``ad/get``, deleted ones included) grouped by campaign into parts of at most as
   many ads as the widest answer held (the cap is at least that), a campaign too big for one part
   split by its ad groups, an ad group too big by its ad ids. The parts are combined and checked
   against the totals again; once a window of an account needed parts, its later windows are asked
   in parts straight away.
6. **Rows that do not add up.** Days whose ad rows still differ from the account totals are read
   again once (the totals, moments later) and then judged, per account-day:

   - *cut*: the parts found ads the first answer lacked and the day still falls short: the rows are
     not known to be whole, so that account-day is refused (yielded as an error, the account's
     other days go on);
   - *settling*: TikTok's totals moved between the two reads (the latest day, still being
     processed): the rows are delivered, the gap recorded; the next runs' lookback corrects it;
   - *unattributed*: stable totals that hold spend no ad row holds (GMV Max and other shop
     campaigns are reported apart from auction ads: singer-io/tap-tiktok-ads issue 32), and asking
     again in parts showed no ad the first answer lacked: the rows are whole, delivered, and the gap
     recorded (``TOTALS_GAP_KEY`` in the raw day; ``core/reconciliation.py`` sums it).
7. **Placing rows.** Each row goes to its day; a row without a usable day or ad id fails the account
   naming the field and the days. These are the only checks of rows here: the client validates an
   answer's envelope, ``core/ad_metrics.py`` validates each row's content.
8. **Ad metadata** (``ad/get``) of the window's ads, each ad fetched once per run. Smart+ ads keep
   their landing pages on an endpoint of their own: ``ad/get`` names a Smart+ ad's creative with its
   ``smart_plus_ad_id`` and no landing page (airbytehq/airbyte PR 81448; Fivetran's dbt_tiktok_ads
   takes Smart+ ads' URLs from ``/smart_plus/ad/get/`` only), so those Smart+ ads are read from
   ``/smart_plus/ad/get/`` and attached to the ad's item as ``smart_plus_ad``, as received. An ad
   the report names and ``ad/get`` does not return is looked up there too, by its id (the
   tolerant guess: no public source says which id a report row of a Smart+ ad carries); found, its
   item is made from the Smart+ ad's names and ids, the Smart+ item attached as received; not
   found, the ad keeps the report's attributes, as before.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tiktok_amp_assets.clients.tiktok import QueryTooLargeError, TikTokApiError, TikTokClient
from tiktok_amp_assets.core import tiktok_contract as api
from tiktok_amp_assets.core.account_failures import without_request_id
from tiktok_amp_assets.core.metric_values import MetricParseError, parse_count, parse_money
from tiktok_amp_assets.core.report_windows import report_windows

log = logging.getLogger(__name__)

# Where a raw day keeps TikTok's account total of the day (None: no delivery), for reconciliation.
ACCOUNT_TOTALS_KEY = "account_totals"
# Where a raw day says why its ad rows do not add up to the totals (absent when they do): one of
# TOTALS_GAP_KINDS, judged by the extraction (module docstring, point 6).
TOTALS_GAP_KEY = "totals_gap"
SETTLING = "settling"
UNATTRIBUTED = "unattributed"
TOTALS_GAP_KINDS = (SETTLING, UNATTRIBUTED)

Rows = list[dict[str, Any]]
WindowKey = tuple[str, date, date]  # (advertiser_id, first day, last day), for messages


@dataclass
class ExtractionFigures:
    """What a run's extraction did beyond the plain path, for the run's metadata."""

    windows: int = 0
    narrowed_queries: int = 0  # queries TikTok found too large (40067), asked again in halves
    windows_in_parts: int = 0  # windows whose answer looked cut, asked again in parts
    part_queries: int = 0  # report queries of those parts
    totals_read_again: int = 0  # windows whose rows did not add up, their totals read a second time


@dataclass
class _Account:
    """What the extraction learns about one account during a run."""

    advertiser_id: str
    ads_by_id: dict[str, dict[str, Any]] = field(default_factory=dict)  # ad/get items, each fetched once
    smart_plus_asked: set[str] = field(default_factory=set)  # ids asked of /smart_plus/ad/get/ this run
    listing: Rows | None = None  # every ad of the account, fetched when a window must be asked in parts
    in_parts: bool = False  # a window of this account was cut: ask the later ones in parts at once
    ad_count: int | None = None  # every ad of the account, deleted ones included, once known


@dataclass(frozen=True)
class Window:
    """One account's report window, whole: rows and totals by day (YYYY-MM-DD), and the ads' items."""

    advertiser_id: str
    start: date
    end: date
    rows_by_day: dict[str, Rows]
    totals_by_day: dict[str, dict[str, Any]]
    ads_by_id: dict[str, dict[str, Any]]
    gaps: dict[str, str] = field(default_factory=dict)  # day -> TOTALS_GAP_KINDS: delivered, with a gap
    refused: dict[str, str] = field(default_factory=dict)  # day -> why its rows are not known whole

    def days(self) -> list[date]:
        return [self.start + timedelta(days=offset) for offset in range((self.end - self.start).days + 1)]

    def raw_day(self, day: date, advertiser_info: dict[str, Any], fetched_at: str) -> dict[str, Any]:
        """What the raw asset stores for one account and day (``core/ad_metrics.py`` reads it)."""
        rows = self.rows_by_day.get(day.isoformat(), [])
        ad_ids = sorted({str(row["dimensions"]["ad_id"]) for row in rows})
        return {
            "advertiser_id": self.advertiser_id,
            "stat_date": day.isoformat(),
            "fetched_at": fetched_at,
            "advertiser_info": advertiser_info,
            ACCOUNT_TOTALS_KEY: self.totals_by_day.get(day.isoformat()),
            **({TOTALS_GAP_KEY: self.gaps[day.isoformat()]} if day.isoformat() in self.gaps else {}),
            "report_rows": rows,
            "ads": [self.ads_by_id[ad_id] for ad_id in ad_ids if ad_id in self.ads_by_id],
        }


class TikTokExtraction:
    """A run's extraction from TikTok through one client; ``figures()`` for the run's metadata."""

    def __init__(self, client: TikTokClient, *, logger: logging.Logger | Any = None) -> None:
        self._client = client
        self._log = logger or log
        # The fewest ads an answer held when it turned out cut: the cap is at least this. Learnt
        # from the data (never assumed) and shared by the run's accounts, as TikTok's cap is.
        self._cut_at: int | None = None
        # The fewest ads an account had whose unfiltered answer turned out cut: the cap is below it.
        self._cut_scope: int | None = None
        self.stats = ExtractionFigures()

    def figures(self) -> dict[str, int]:
        return {
            "run_tiktok_calls": sum(self._client.calls.values()),
            "run_tiktok_retries": self._client.retries,
            # Seconds spent waiting out restrictions, maintenance and server errors (the retry budget).
            "run_tiktok_outage_wait_seconds": round(self._client.budget.waited_seconds),
            "run_tiktok_windows": self.stats.windows,
            "run_tiktok_narrowed_queries": self.stats.narrowed_queries,
            "run_tiktok_windows_in_parts": self.stats.windows_in_parts,
            "run_tiktok_part_queries": self.stats.part_queries,
            "run_tiktok_totals_read_again": self.stats.totals_read_again,
        }

    # -- accounts -------------------------------------------------------------------------------

    def account_facts(
        self, advertiser_ids: list[str]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, TikTokApiError]]:
        """Each account's ``advertiser/info`` item, and the error of each account TikTok refused.

        One request serves up to 100 accounts; when TikTok refuses it (40001, or 40002 naming one
        id, refuse the whole request), each account is asked on its own so that one account the
        token cannot read does not stop the others. Raises :class:`TikTokApiError` when the refusal
        is about the app or its token (``APP_OR_TOKEN_CODES``), or when every account is refused
        alike: then it is no account's own problem, and one message says it once.
        """
        try:
            items = self._client.advertiser_info(advertiser_ids)
            return {str(item["advertiser_id"]): item for item in items}, {}
        except TikTokApiError as error:
            # A revoked token or an exhausted retry budget fails the same way for each account.
            if error.code in api.APP_OR_TOKEN_CODES or (
                error.code not in (api.NO_PERMISSION, api.PARAMETER_ERROR, None)
            ):
                raise
            if len(advertiser_ids) == 1:
                return {}, {advertiser_ids[0]: error}
        infos: dict[str, dict[str, Any]] = {}
        failures: dict[str, TikTokApiError] = {}
        for advertiser_id in advertiser_ids:
            try:
                infos[advertiser_id] = self._client.advertiser_info([advertiser_id])[0]
            except TikTokApiError as error:
                if error.code in api.APP_OR_TOKEN_CODES:
                    raise
                failures[advertiser_id] = error
        if not infos and len({_cause(error) for error in failures.values()}) == 1:
            first = next(iter(failures.values()))
            raise TikTokApiError(
                accounts=advertiser_ids, endpoint=first.endpoint, code=first.code, detail=first.detail,
                hint=first.hint,
            )  # fmt: skip
        return infos, failures

    def account_days(
        self, advertiser_id: str, advertiser_info: dict[str, Any], days: Sequence[date]
    ) -> Iterator[tuple[date, dict[str, Any] | TikTokApiError]]:
        """Each of ``days`` (in order) with what the raw asset stores for it, window by window, or
        the error that refused that one day (a cut answer that parts could not make whole).

        Raises :class:`TikTokApiError` naming the account when TikTok refuses or keeps failing; the
        days yielded before are whole.
        """
        wanted = set(days)
        for window in self.windows(advertiser_id, min(days), max(days)):
            fetched_at = datetime.now(UTC).isoformat(timespec="seconds")
            for day in window.days():
                if day not in wanted:
                    continue
                refused = window.refused.get(day.isoformat())
                if refused is not None:
                    yield (
                        day,
                        TikTokApiError(
                            accounts=[advertiser_id],
                            endpoint=api.REPORT_PATH,
                            code=None,
                            detail=refused,
                            hint="run the partition again; if it persists, TikTok's report of this account is "
                            "incomplete: report it to TikTok with the day and the account",
                        ),
                    )
                else:
                    yield day, window.raw_day(day, advertiser_info, fetched_at)
            # Let go of this window before the next one is fetched: the loop variable would keep it
            # alive until then, and two windows of decoded rows at once doubled the step's memory.
            del window

    def windows(self, advertiser_id: str, first: date, last: date) -> Iterator[Window]:
        """The account's report windows from ``first`` to ``last``, each whole (module docstring)."""
        account = _Account(advertiser_id)
        for start, end in report_windows(first, last):
            yield self._window(account, start, end)

    # -- one window -----------------------------------------------------------------------------

    def _window(self, account: _Account, start: date, end: date) -> Window:
        self.stats.windows += 1
        advertiser_id = account.advertiser_id
        key: WindowKey = (advertiser_id, start, end)
        client = self._client
        totals = self._narrowed(key, lambda s, e: client.account_day_totals(advertiser_id, s, e))
        totals_by_day = {day: rows[-1] for day, rows in _rows_by_day(_flat(totals), key).items()}
        found_ads_it_lacked = False  # parts held ads the first answer did not: that answer was cut

        if account.in_parts and self._cut_at is not None:
            self.stats.windows_in_parts += 1
            rows = self._in_parts(account, key, self._cut_at)
            rows_by_day = _rows_by_day(rows, key, ad_level=True)
        else:
            answers = self._narrowed(key, lambda s, e: client.ad_day_report(advertiser_id, s, e))
            rows = _flat(answers)
            rows_by_day = _rows_by_day(rows, key, ad_level=True)
            widest = max((_distinct_ads(answer) for answer in answers), default=0)
            short = _short_days(rows_by_day, totals_by_day)
            limit = self._part_size(widest, short)
            reason = (
                f"ad rows short of the account totals on {_days_label(short)}"
                if short
                else "as many ads as a cut answer held"
            )
            if limit is None and widest and self._as_big_as_a_cut_account(account):
                limit, reason = self._cut_at, "the account has as many ads as one whose answer was cut"
            if limit is not None:
                self._log.warning(
                    "TikTok's answer for ad account %s, %s to %s looks cut (%s; its widest answer holds %s "
                    "ads): asking again in parts of at most %s ads",
                    advertiser_id,
                    start,
                    end,
                    reason,
                    widest,
                    limit,
                )
                first_ads = _ad_ids(rows)
                # The cut answer can be as big as the whole window: let it go before the parts fetch
                # the window again, rather than hold both.
                del answers, rows, rows_by_day
                rows = self._in_parts(account, key, limit)
                rows_by_day = _rows_by_day(rows, key, ad_level=True)
                self.stats.windows_in_parts += 1
                found_ads_it_lacked = bool(_ad_ids(rows) - first_ads)
                whole = not _short_days(rows_by_day, totals_by_day)
                # A cap leaves ads out: only parts holding more ads than the widest answer prove one
                # (rows missing for another reason, then found on asking again, teach nothing).
                if whole and _distinct_ads(rows) > widest:
                    self._cut_at = limit if self._cut_at is None else min(self._cut_at, limit)
                    scope = self._ad_count(account)  # the query's scope: every ad, deleted ones too
                    self._cut_scope = scope if self._cut_scope is None else min(self._cut_scope, scope)
                    account.in_parts = True

        gaps: dict[str, str] = {}
        refused: dict[str, str] = {}
        if _differing_days(rows_by_day, totals_by_day):
            totals_by_day, gaps, refused = self._judge_gaps(
                key, rows_by_day, totals_by_day, found_ads_it_lacked
            )
        self._fetch_ads(account, {str(row["dimensions"]["ad_id"]) for row in rows}, key)
        return Window(advertiser_id, start, end, rows_by_day, totals_by_day, account.ads_by_id, gaps, refused)

    def _judge_gaps(
        self,
        key: WindowKey,
        rows_by_day: dict[str, Rows],
        first_totals: dict[str, dict[str, Any]],
        found_ads_it_lacked: bool,
    ) -> tuple[dict[str, dict[str, Any]], dict[str, str], dict[str, str]]:
        """The window's totals read once more, and each day whose rows still differ from them judged
        (module docstring, point 6): the totals to keep, the days delivered with a gap and their kind,
        and the days refused with the reason."""
        advertiser_id = key[0]
        self.stats.totals_read_again += 1
        totals = self._narrowed(key, lambda s, e: self._client.account_day_totals(advertiser_id, s, e))
        totals_by_day = {day: rows[-1] for day, rows in _rows_by_day(_flat(totals), key).items()}
        short = set(_short_days(rows_by_day, totals_by_day))
        gaps: dict[str, str] = {}
        refused: dict[str, str] = {}
        for day in _differing_days(rows_by_day, totals_by_day):
            if day in short and found_ads_it_lacked:
                refused[day] = (
                    f"the ad rows of {day} fall short of TikTok's account totals: its answer was cut (asking "
                    "again in parts found ads it lacked) and the parts still do not add up, so the rows are "
                    "not known to be whole"
                )
            elif _figures(first_totals.get(day)) != _figures(totals_by_day.get(day)):
                gaps[day] = SETTLING
            else:
                gaps[day] = UNATTRIBUTED
        if gaps:
            self._log.warning(
                "ad account %s: the ad rows of %s differ from TikTok's account totals (%s); they are delivered "
                "as TikTok reports them and the gap is recorded (check %s)",
                advertiser_id,
                _days_label(sorted(gaps)),
                ", ".join(f"{day}: {kind}" for day, kind in sorted(gaps.items())[:4]),
                "rows_add_up_to_account_totals",
            )
        if refused:
            self._log.error(
                "ad account %s: %s not imported: TikTok's answer was cut and asking again in parts did not "
                "make it whole",
                advertiser_id,
                _days_label(sorted(refused)),
            )
        return totals_by_day, gaps, refused

    def _as_big_as_a_cut_account(self, account: _Account) -> bool:
        """Whether the account has at least as many ads as one whose unfiltered answer was found cut
        this run: TikTok caps the advertisements a query reports on (SDK java_sdk/README.md), so such
        an account's answer is cut too, even where no totals can show it."""
        return (
            self._cut_scope is not None
            and self._cut_at is not None
            and self._ad_count(account) >= self._cut_scope
        )

    def _ad_count(self, account: _Account) -> int:
        """How many ads the account has, deleted ones included (its listing's length, else one
        ``ad/get`` call's ``page_info``), counted once per run."""
        if account.ad_count is None:
            account.ad_count = (
                len(account.listing)
                if account.listing is not None
                else self._client.ad_count(account.advertiser_id)
            )
        return account.ad_count

    def _part_size(self, widest: int, short: list[str]) -> int | None:
        """How many ads a part may hold when the answer looks cut, or None when it does not.

        A cut answer holds the rows of at most as many ads as TikTok's cap, so the cap is at least
        ``widest``, and an answer as wide as one found cut is suspect. TikTok counts the ads in a
        query's scope, delivering or not, so a cut answer may also be narrower: the account totals
        (``short``), or the account's number of ads (:meth:`_as_big_as_a_cut_account`), show it then.
        An answer without rows was not cut (nothing to size parts by).
        """
        if widest == 0:
            return None
        if self._cut_at is not None:
            return self._cut_at if widest >= self._cut_at else None
        return widest if short else None

    def _in_parts(self, account: _Account, key: WindowKey, limit: int) -> Rows:
        """Every ad row of the window, asked in parts of at most ``limit`` ads each."""
        advertiser_id = account.advertiser_id
        if account.listing is None:
            listing = self._client.all_ads(advertiser_id)
            for item in listing:
                _check_ad_item(item, key)
                account.ads_by_id.setdefault(str(item["ad_id"]), item)
            account.listing = listing
        rows: Rows = []
        for part in plan_parts(account.listing, limit):
            answers = self._narrowed(
                key, lambda s, e, part=part: self._client.ad_day_report(advertiser_id, s, e, ids=part)
            )
            self.stats.part_queries += len(answers)
            rows.extend(_flat(answers))
        return rows

    def _narrowed(self, key: WindowKey, fetch: Callable[[date, date], Rows]) -> list[Rows]:
        """``fetch`` over the window of ``key``; when TikTok finds a query too large (40067), over the
        halves of its days instead, down to single days. The answers, one list of rows per query."""
        advertiser_id, start, end = key
        try:
            return [fetch(start, end)]
        except QueryTooLargeError as error:
            if start == end:
                raise TikTokApiError(
                    accounts=[advertiser_id],
                    endpoint=error.endpoint,
                    code=error.code,
                    detail=f"TikTok finds the report of {start} too large even for that one day: {error.detail}",
                    hint=error.hint,
                ) from None
            self.stats.narrowed_queries += 1
            middle = start + (end - start) // 2
            self._log.warning(
                "TikTok finds the report of ad account %s for %s to %s too large (code %s): asking for %s to %s "
                "and %s to %s",
                advertiser_id,
                start,
                end,
                error.code,
                start,
                middle,
                middle + timedelta(days=1),
                end,
            )
            return self._narrowed((advertiser_id, start, middle), fetch) + self._narrowed(
                (advertiser_id, middle + timedelta(days=1), end), fetch
            )

    def _fetch_ads(self, account: _Account, ad_ids: set[str], key: WindowKey) -> None:
        new_ad_ids = ad_ids - account.ads_by_id.keys()
        for item in self._client.ads(account.advertiser_id, new_ad_ids):
            _check_ad_item(item, key)
            account.ads_by_id[str(item["ad_id"])] = item
        self._fetch_smart_plus_ads(account, ad_ids)

    def _fetch_smart_plus_ads(self, account: _Account, ad_ids: set[str]) -> None:
        """Attach the Smart+ ad of each ad that is one's creative, or that ad/get did not return (step 7)."""
        wanted: dict[str, list[str]] = defaultdict(list)  # Smart+ ad id -> the report's ad ids
        for ad_id in sorted(ad_ids - account.smart_plus_asked):
            item = account.ads_by_id.get(ad_id)
            if item is None:
                wanted[ad_id].append(ad_id)
            elif _usable_id(item.get("smart_plus_ad_id")) and "smart_plus_ad" not in item:
                wanted[str(item["smart_plus_ad_id"])].append(ad_id)
        account.smart_plus_asked |= ad_ids
        if not wanted:
            return
        for smart_plus in self._client.smart_plus_ads(account.advertiser_id, wanted):
            for ad_id in wanted.get(str(smart_plus.get("smart_plus_ad_id")), ()):
                item = account.ads_by_id.get(ad_id)
                if item is None:
                    # Not in ad/get: the Smart+ ad's own names and ids stand in for ad/get's.
                    item = {
                        "ad_id": ad_id,
                        **{name: smart_plus[name] for name in _SMART_PLUS_NAMES if name in smart_plus},
                    }
                account.ads_by_id[ad_id] = {**item, "smart_plus_ad": smart_plus}


def _cause(error: TikTokApiError) -> tuple[int | None, str, str]:
    """What went wrong, whichever request it was: code, endpoint and message without its request id."""
    return error.code, error.endpoint, without_request_id(error.detail)


# What a Smart+ ad's item names that ad/get's would (SDK yml_files/smart_plus_ad_get.yml).
_SMART_PLUS_NAMES = ("ad_name", "adgroup_id", "adgroup_name", "campaign_id", "campaign_name", "advertiser_id")


# -- planning the parts of a cut answer -------------------------------------------------------------


def plan_parts(ads: Iterable[dict[str, Any]], limit: int) -> list[tuple[str, list[str]]]:
    """Report filters ``(field, ids)`` that together select every ad of ``ads`` (``ad/get`` items),
    each at most ``limit`` ads and 100 ids: whole campaigns where they fit, else ad groups, else ads."""
    if limit < 1:
        raise ValueError(f"a part holds at least one ad, got {limit}")
    tree: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    loose: list[str] = []  # ads whose parents ad/get did not name: asked by id
    for item in ads:
        ad_id, adgroup_id, campaign_id = (item.get(name) for name in ("ad_id", "adgroup_id", "campaign_id"))
        if not _usable_id(ad_id):
            continue
        if _usable_id(campaign_id) and _usable_id(adgroup_id):
            tree[str(campaign_id)][str(adgroup_id)].append(str(ad_id))
        else:
            loose.append(str(ad_id))
    parts: list[tuple[str, list[str]]] = []
    campaign_sizes = {campaign: sum(map(len, groups.values())) for campaign, groups in tree.items()}
    fitting = {campaign: size for campaign, size in campaign_sizes.items() if size <= limit}
    parts += [(api.CAMPAIGN_IDS_FILTER, ids) for ids in _pack(fitting, limit)]
    for campaign in sorted(campaign_sizes.keys() - fitting.keys()):
        group_sizes = {group: len(ad_ids) for group, ad_ids in tree[campaign].items()}
        fitting_groups = {group: size for group, size in group_sizes.items() if size <= limit}
        parts += [(api.ADGROUP_IDS_FILTER, ids) for ids in _pack(fitting_groups, limit)]
        for group in sorted(group_sizes.keys() - fitting_groups.keys()):
            loose.extend(tree[campaign][group])
    step = min(limit, api.MAX_FILTER_IDS)
    loose = sorted(set(loose))
    parts += [(api.AD_IDS_FILTER, loose[index : index + step]) for index in range(0, len(loose), step)]
    return parts


def _pack(sizes: dict[str, int], limit: int) -> list[list[str]]:
    """Ids into the fewest bins (first fit, biggest first) of at most ``limit`` ads and 100 ids."""
    bins: list[tuple[list[str], list[int]]] = []  # (ids, [ads])
    for entity, size in sorted(sizes.items(), key=lambda pair: (-pair[1], pair[0])):
        for ids, total in bins:
            if total[0] + size <= limit and len(ids) < api.MAX_FILTER_IDS:
                ids.append(entity)
                total[0] += size
                break
        else:
            bins.append(([entity], [size]))
    return [sorted(ids) for ids, _ in bins]


# -- placing rows and checking sums (no judging of values: core/ad_metrics.py does that) --------


def _flat(answers: list[Rows]) -> Rows:
    return [row for answer in answers for row in answer]


def _distinct_ads(rows: Rows) -> int:
    return len(_ad_ids(rows))


def _ad_ids(rows: Rows) -> set[Any]:
    return {_dimension(row, "ad_id") for row in rows}


def _dimension(row: Any, name: str) -> Any:
    dimensions = row.get("dimensions") if isinstance(row, dict) else None
    return dimensions.get(name) if isinstance(dimensions, dict) else None


def _rows_by_day(rows: Rows, window: WindowKey, *, ad_level: bool = False) -> dict[str, Rows]:
    """Report rows by day (YYYY-MM-DD). A row that cannot be placed (no day, a day outside the window,
    no ad id) fails the account naming the days and the field, rather than raising a KeyError or
    being silently dropped; every other value is kept as received, for ``core`` to judge."""
    _, first, last = window
    by_day: dict[str, Rows] = defaultdict(list)
    known: dict[str, str] = {}  # stat_time_day text -> its day, checked once per text (a window has <= 31)
    for row in rows:
        stat_time_day = _dimension(row, "stat_time_day")
        day = known.get(stat_time_day) if isinstance(stat_time_day, str) else None
        if day is None:
            parsed = _report_day(stat_time_day)
            if parsed is None or not first <= parsed <= last:
                raise _malformed_answer(
                    window, api.REPORT_PATH, "dimensions.stat_time_day", f"a row has {stat_time_day!r}"
                )
            day = known[str(stat_time_day)] = parsed.isoformat()
        if ad_level and not _usable_id(_dimension(row, "ad_id")):
            raise _malformed_answer(
                window, api.REPORT_PATH, "dimensions.ad_id", f"a row has {_dimension(row, 'ad_id')!r}"
            )
        by_day[day].append(row)
    return by_day


def _short_days(rows_by_day: dict[str, Rows], totals_by_day: dict[str, dict[str, Any]]) -> list[str]:
    """Days whose ad rows add up to less than TikTok's account total in one of the four metrics.

    A metric some row of the day holds as no number (garbage, negative) is not compared that day:
    such a row is a malformed answer, which ``core/ad_metrics.py`` names, not a sign of a cut.
    """
    short = []
    for day, total in sorted(totals_by_day.items()):
        expected = _figures(total)
        found = _summed_figures(rows_by_day.get(day, []), len(expected))
        if any(
            have is not None and want is not None and have < want
            for have, want in zip(found, expected, strict=True)
        ):
            short.append(day)
    return short


def _summed_figures(rows: Rows, metrics: int) -> list[Decimal | None]:
    """The rows' sums of each metric (as :func:`_figures` reads them); ``None`` for a metric some row
    holds as no number, which is then not compared."""
    found: list[Decimal | None] = [_ZERO] * metrics
    for row in rows:
        found = [
            None if have is None or add is None else have + add
            for have, add in zip(found, _figures(row), strict=True)
        ]
    return found


def _differing_days(rows_by_day: dict[str, Rows], totals_by_day: dict[str, dict[str, Any]]) -> list[str]:
    """Days whose ad rows add up to something else than TikTok's account total in one of the four
    metrics (more or less; a day with rows and no total counts too). A metric some row holds as no
    number is not compared, as in :func:`_short_days`."""
    differing = []
    for day in sorted(totals_by_day.keys() | {day for day, rows in rows_by_day.items() if rows}):
        expected = _figures(totals_by_day.get(day))
        found = _summed_figures(rows_by_day.get(day, []), len(expected))
        if any(
            have is not None and want is not None and have != want
            for have, want in zip(found, expected, strict=True)
        ):
            differing.append(day)
    return differing


def _figures(row: Any) -> list[Decimal | None]:
    """The four metrics of a row as numbers: a missing-value marker is 0, anything the metrics'
    parser refuses is None (judging values is ``core/ad_metrics.py``'s job, with the same parser)."""
    if row is None:  # no total row: no delivery that day
        return [_ZERO] * len(api.PERFORMANCE_METRICS)
    metrics = row.get("metrics") if isinstance(row, dict) else None
    if not isinstance(metrics, dict):
        return [None] * len(api.PERFORMANCE_METRICS)
    return [_number(metrics.get(name), name) for name in api.PERFORMANCE_METRICS]


_ZERO = Decimal(0)


def _number(value: object, field: str) -> Decimal | None:
    parse = parse_money if field == api.SPEND else parse_count
    try:
        number = parse(value, field=field)
    except MetricParseError:
        return None
    return _ZERO if number is None else Decimal(number)


def _days_label(days: list[str]) -> str:
    return ", ".join(days) if len(days) <= 4 else f"{len(days)} days ({', '.join(days[:3])}, ...)"


def _report_day(stat_time_day: object) -> date | None:
    if not isinstance(stat_time_day, str):
        return None
    try:
        return date.fromisoformat(stat_time_day[:10])
    except ValueError:
        return None


def _usable_id(value: object) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and bool(str(value).strip())


def _check_ad_item(item: Any, window: WindowKey) -> None:
    ad_id = item.get("ad_id") if isinstance(item, dict) else None
    if not _usable_id(ad_id):
        raise _malformed_answer(window, api.AD_PATH, "ad_id", f"an item has {ad_id!r}")


def _malformed_answer(window: WindowKey, endpoint: str, field: str, problem: str) -> TikTokApiError:
    advertiser_id, first, last = window
    return TikTokApiError(
        accounts=[advertiser_id],
        endpoint=endpoint,
        code=None,
        detail=f"field {field!r} unusable for the days {first} to {last}: {problem}",
        hint="run the partition again; if it persists, TikTok's answers changed shape: report it to the "
        "maintainers of tiktok-amp-assets",
    )
