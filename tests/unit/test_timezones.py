"""Ad accounts' time zones: ``Etc/GMT+8``-style names (a fixed offset all year, sign reversed) in the
partitions check and in event times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tiktok_amp_assets.core.events import event_time_ms
from tiktok_amp_assets.core.timezones import timezone_mismatches, utc_offsets, zone_label


@pytest.mark.parametrize(
    ("zone", "label"),
    [
        ("Etc/GMT+8", "Etc/GMT+8 (UTC-8 all year)"),
        ("Etc/GMT-9", "Etc/GMT-9 (UTC+9 all year)"),
        ("Etc/GMT-14", "Etc/GMT-14 (UTC+14 all year)"),
        ("Etc/GMT", "Etc/GMT"),
        ("America/Los_Angeles", "America/Los_Angeles"),
    ],
)
def test_zone_labels_spell_out_the_offset(zone: str, label: str) -> None:
    assert zone_label(zone) == label


def test_etc_gmt_plus_8_is_utc_minus_8_all_year() -> None:
    assert utc_offsets("Etc/GMT+8", 2025) == (timedelta(hours=-8), timedelta(hours=-8))
    assert utc_offsets("America/Los_Angeles", 2025) == (timedelta(hours=-8), timedelta(hours=-7))
    assert utc_offsets("Etc/GMT-9", 2025) == utc_offsets("Asia/Tokyo", 2025)


def test_mismatches_compare_offsets_not_names_and_name_only_accounts_further_west() -> None:
    zones = {"1": "Etc/GMT+8", "2": "Asia/Tokyo", "3": "Etc/GMT-9", "4": None}
    day = date(2025, 3, 1)
    in_los_angeles = timezone_mismatches(zones, "America/Los_Angeles", day)
    # Los Angeles keeps summer time, Etc/GMT+8 does not: in summer the account's day ends an hour
    # after the partitions'. Tokyo's days end long before Los Angeles's: no warning.
    assert set(in_los_angeles) == {"1"}
    assert (
        "Etc/GMT+8 (UTC-8 all year)" in in_los_angeles["1"] and "TIKTOK_AMP_TIMEZONE" in in_los_angeles["1"]
    )
    assert set(timezone_mismatches(zones, "Etc/GMT+8", day)) == set()
    assert set(timezone_mismatches(zones, "Asia/Tokyo", day)) == {"1"}  # Etc/GMT-9 is Tokyo's offset
    assert set(timezone_mismatches(zones, "Pacific/Kiritimati", day)) == {"1", "2", "3"}  # UTC+14


@pytest.mark.parametrize("day", [date(2025, 1, 15), date(2025, 7, 15), date(2025, 12, 31)])
def test_event_time_is_local_noon_of_the_accounts_own_day(day: date) -> None:
    noon = datetime(day.year, day.month, day.day, 20, tzinfo=UTC)  # 12:00 at UTC-8
    assert event_time_ms(day, "Etc/GMT+8") == int(noon.timestamp() * 1000)
    noon_east = datetime(day.year, day.month, day.day, 3, tzinfo=UTC)  # 12:00 at UTC+9
    assert event_time_ms(day, "Etc/GMT-9") == int(noon_east.timestamp() * 1000)
