"""Ad accounts' time zones against the partitions' time zone.

TikTok reports each ad account's days in the account's own time zone (``advertiser/info``
``timezone``), which TikTok's help describes as a fixed UTC offset all year, without daylight saving:
an account created in California reports in UTC-8 in summer too. Such zones come as IANA ``Etc``
names, whose sign is POSIX's and reads backwards: ``Etc/GMT+8`` is UTC-8, ``Etc/GMT-9`` is UTC+9.
Python's ``zoneinfo`` applies that sign, so all arithmetic goes through it and never through the
digits of the name; :func:`zone_label` says the offset the way people read it.

A partition holds exactly one calendar day of every account (nothing is shifted), and the
partitions' zone only decides when a day counts as over; an account whose day ends later than the
partitions' is worth a warning, since the schedule may then read a day before it is over there.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_ETC_OFFSET = re.compile(r"Etc/GMT([+-])(\d{1,2})")


def zone_label(zone: str) -> str:
    """``zone`` with its UTC offset spelt out when the name hides it: ``Etc/GMT+8 (UTC-8 all year)``."""
    match = _ETC_OFFSET.fullmatch(zone)
    if match is None:
        return zone
    sign = "-" if match.group(1) == "+" else "+"
    return f"{zone} (UTC{sign}{int(match.group(2))} all year)"


def utc_offsets(zone: str, year: int) -> tuple[timedelta, timedelta]:
    """``zone``'s offsets from UTC at noon on 1 January and 1 July of ``year`` (winter and summer)."""
    info = ZoneInfo(zone)
    moments = (datetime.combine(date(year, month, 1), time(12), tzinfo=info) for month in (1, 7))
    winter, summer = (moment.utcoffset() or timedelta(0) for moment in moments)
    return winter, summer


def timezone_mismatches(zones: dict[str, str | None], partitions_timezone: str, day: date) -> dict[str, str]:
    """Accounts whose days end after the partitions' days do (a zone further west, in the winter or
    the summer of ``day``'s year), each with a message naming both zones and what to set. An account
    further east is fine: its day is over before the partitions' day ends."""
    partitions = utc_offsets(partitions_timezone, day.year)
    mismatched: dict[str, str] = {}
    for advertiser_id, zone in zones.items():
        if zone is None or all(
            account >= partition
            for account, partition in zip(utc_offsets(zone, day.year), partitions, strict=True)
        ):
            continue
        mismatched[advertiser_id] = (
            f"ad account {advertiser_id} reports days in {zone_label(zone)}, whose days end after those of the "
            f"partitions' time zone {zone_label(partitions_timezone)}. Each partition still holds the account's "
            "own calendar day (nothing is shifted), but the schedule may read a day before it is over there. Set "
            f"TIKTOK_AMP_TIMEZONE to the accounts' westernmost time zone (this account's is {zone}); see "
            "docs/time-zones.md in the project."
        )
    return mismatched
