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
   account total of that day, or when one answer holds as many distinct ads as an answer that was
   cut before in this run. A suspected window is asked again in parts small enough to fit: the
   account's ads (``ad/get``, deleted ones included) grouped by campaign into parts of at most as
   many ads as the widest answer held (the cap is at least that), a campaign too big for one part
   split by its ad groups, an ad group too big by its ad ids. The parts are combined and checked
   against the totals again; once a window of an account needed parts, its later windows are asked
   in parts straight away.
6. **Placing rows.** Each row goes to its day; a row without a usable day or ad id fails the account
   naming the field and the days. These are the only checks of rows here: the client validates an
   answer's envelope, ``core/ad_metrics.py`` validates each row's content.
7. **Ad metadata** (``ad/get``) of the window's ads, each ad fetched once per run.
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
from tiktok_amp_assets.core.metric_values import MetricParseError, parse_count, parse_money
from tiktok_amp_assets.core.report_windows import report_windows

log = logging.getLogger(__name__)

# Where a raw day keeps TikTok's account total of the day (None: no delivery), for reconciliation.
ACCOUNT_TOTALS_KEY = "account_totals"

Rows = list[dict[str, Any]]
WindowKey = tuple[str, date, date]  # (advertiser_id, first day, last day), for messages


@dataclass
class ExtractionFigures:
    """What a run's extraction did beyond the plain path, for the run's metadata."""

    windows: int = 0
    narrowed_queries: int = 0  # queries TikTok found too large (40067), asked again in halves
    windows_in_parts: int = 0  # windows whose answer looked cut, asked again in parts
    part_queries: int = 0  # report queries of those parts


@dataclass
class _Account:
    """What the extraction learns about one account during a run."""

    advertiser_id: str
    ads_by_id: dict[str, dict[str, Any]] = field(default_factory=dict)  # ad/get items, each fetched once
    listing: Rows | None = None  # every ad of the account, fetched when a window must be asked in parts
    in_parts: bool = False  # a window of this account was cut: ask the later ones in parts at once


@dataclass(frozen=True)
class Window:
    """One account's report window, whole: rows and totals by day (YYYY-MM-DD), and the ads' items."""

    advertiser_id: str
    start: date
    end: date
    rows_by_day: dict[str, Rows]
    totals_by_day: dict[str, dict[str, Any]]
    ads_by_id: dict[str, dict[str, Any]]

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
        self.stats = ExtractionFigures()

    def figures(self) -> dict[str, int]:
        return {
            "run_tiktok_calls": sum(self._client.calls.values()),
            "run_tiktok_retries": self._client.retries,
            "run_tiktok_windows": self.stats.windows,
            "run_tiktok_narrowed_queries": self.stats.narrowed_queries,
            "run_tiktok_windows_in_parts": self.stats.windows_in_parts,
            "run_tiktok_part_queries": self.stats.part_queries,
        }

    # -- accounts -------------------------------------------------------------------------------

    def account_facts(self, advertiser_ids: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Each account's ``advertiser/info`` item, and the accounts whose facts TikTok refused.

        One request serves up to 100 accounts; when TikTok refuses it, each account is asked on its
        own so that one account without permission does not stop the others.
        """
        try:
            items = self._client.advertiser_info(advertiser_ids)
            return {str(item["advertiser_id"]): item for item in items}, {}
        except TikTokApiError as error:
            # Only a refusal about some accounts is worth asking account by account; a revoked token
            # or an exhausted retry budget would fail the same way for each of them.
            if len(advertiser_ids) == 1 or error.code not in (api.NO_PERMISSION, None):
                return {}, dict.fromkeys(advertiser_ids, str(error))
        infos: dict[str, dict[str, Any]] = {}
        failures: dict[str, str] = {}
        for advertiser_id in advertiser_ids:
            try:
                infos[advertiser_id] = self._client.advertiser_info([advertiser_id])[0]
            except TikTokApiError as error:
                failures[advertiser_id] = str(error)
        return infos, failures

    def account_days(
        self, advertiser_id: str, advertiser_info: dict[str, Any], days: Sequence[date]
    ) -> Iterator[tuple[date, dict[str, Any]]]:
        """Each of ``days`` (in order) with what the raw asset stores for it, window by window.

        Raises :class:`TikTokApiError` naming the account when TikTok refuses or keeps failing; the
        days yielded before are whole.
        """
        wanted = set(days)
        for window in self.windows(advertiser_id, min(days), max(days)):
            fetched_at = datetime.now(UTC).isoformat(timespec="seconds")
            for day in window.days():
                if day in wanted:
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

        if account.in_parts and self._cut_at is not None:
            self.stats.windows_in_parts += 1
            rows = self._in_parts(account, key, self._cut_at)
            rows_by_day = _rows_by_day(rows, key, ad_level=True)
            self._warn_if_short(key, rows_by_day, totals_by_day, "even asked in parts")
        else:
            answers = self._narrowed(key, lambda s, e: client.ad_day_report(advertiser_id, s, e))
            rows = _flat(answers)
            rows_by_day = _rows_by_day(rows, key, ad_level=True)
            widest = max((_distinct_ads(answer) for answer in answers), default=0)
            short = _short_days(rows_by_day, totals_by_day)
            limit = self._part_size(widest, short)
            if limit is None:
                if short:
                    self._warn_short(key, short, "though the answer does not look cut")
            else:
                self._log.warning(
                    "TikTok's answer for ad account %s, %s to %s looks cut (%s; its widest answer holds %s "
                    "ads): asking again in parts of at most %s ads",
                    advertiser_id,
                    start,
                    end,
                    f"ad rows short of the account totals on {_days_label(short)}"
                    if short
                    else "as many ads as a cut answer held",
                    widest,
                    limit,
                )
                # The cut answer can be as big as the whole window: let it go before the parts fetch
                # the window again, rather than hold both.
                del answers, rows, rows_by_day
                rows = self._in_parts(account, key, limit)
                rows_by_day = _rows_by_day(rows, key, ad_level=True)
                self.stats.windows_in_parts += 1
                whole = not self._warn_if_short(key, rows_by_day, totals_by_day, "even asked in parts")
                # A cap leaves ads out: only parts holding more ads than the widest answer prove one
                # (rows missing for another reason, then found on asking again, teach nothing).
                if whole and _distinct_ads(rows) > widest:
                    self._cut_at = limit if self._cut_at is None else min(self._cut_at, limit)
                    account.in_parts = True

        self._fetch_ads(account, {str(row["dimensions"]["ad_id"]) for row in rows}, key)
        return Window(advertiser_id, start, end, rows_by_day, totals_by_day, account.ads_by_id)

    def _part_size(self, widest: int, short: list[str]) -> int | None:
        """How many ads a part may hold when the answer looks cut, or None when it does not.

        A cut answer holds exactly as many ads as TikTok's cap, so the cap is at least ``widest``: an
        answer narrower than one already found cut was not cut, and an answer without rows was not
        cut either (nothing to size parts by).
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

    def _warn_if_short(
        self, key: WindowKey, rows_by_day: dict[str, Rows], totals_by_day: dict[str, dict[str, Any]], how: str
    ) -> bool:
        short = _short_days(rows_by_day, totals_by_day)
        if short:
            self._warn_short(key, short, how)
        return bool(short)

    def _warn_short(self, key: WindowKey, short: list[str], how: str) -> None:
        self._log.warning(
            "ad account %s: the ad rows of %s fall short of TikTok's account totals (%s); the "
            "reconciliation check will stop these days before any upload",
            key[0],
            _days_label(short),
            how,
        )


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
    return len({_dimension(row, "ad_id") for row in rows})


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
        found: list[Decimal | None] = [_ZERO] * len(expected)
        for row in rows_by_day.get(day, []):
            found = [
                None if have is None or add is None else have + add
                for have, add in zip(found, _figures(row), strict=True)
            ]
        if any(
            have is not None and want is not None and have < want
            for have, want in zip(found, expected, strict=True)
        ):
            short.append(day)
    return short


def _figures(row: Any) -> list[Decimal | None]:
    """The four metrics of a row as numbers: a missing-value marker is 0, anything the metrics'
    parser refuses is None (judging values is ``core/ad_metrics.py``'s job, with the same parser)."""
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
