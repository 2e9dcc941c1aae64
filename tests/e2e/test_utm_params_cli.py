"""UTMs set with TikTok's URL-parameter builder, and Smart+ ads, as a user imports them: `dagster asset
materialize` over a 4-day range of two accounts, the events read back from the Amplitude emulator.

The emulator serves about one ad in five with ``utm_params`` (a list of ``{key, value}``), half of
them on a landing page without a query, and about one in eleven as a Smart+ ad's creative whose
landing pages and parameters only ``/smart_plus/ad/get/`` knows. Their UTMs in Amplitude are the
builder's values (the macros resolved), where the landing page does not set them itself.
"""

from __future__ import annotations

from datetime import date, timedelta

from tiktok_amp_emulators.catalogue import UTM_PARAMS, Ad

from ..conftest import API_KEY, Project
from .test_cli import dagster_cli

FIRST = date(2025, 3, 1)
LAST = FIRST + timedelta(days=3)
AMPLITUDE_MAX_STRING = 1024  # Amplitude truncates longer property values (HTTP V2 docs)


def expected_utms(project: Project, ad: Ad) -> dict[str, str]:
    """The builder's values with TikTok's macros replaced by the ad's own, in the emulator's terms."""
    macros = {"__CAMPAIGN_NAME__": project.catalogue.campaigns[ad.campaign_id].name, "__CID__": ad.ad_id}
    return {key: macros.get(value, value)[:AMPLITUDE_MAX_STRING] for key, value in UTM_PARAMS}


def test_utm_params_and_smart_plus_ads_arrive_in_amplitude_with_their_utms(project: Project) -> None:
    result = dagster_cli(
        project,
        "asset", "materialize", "-m", "tiktok_amp_assets.definitions", "--select", "group:tiktok_ads",
        "--partition-range", f"{FIRST.isoformat()}...{LAST.isoformat()}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]

    events = {}
    for event in project.amplitude.counted_events(API_KEY):
        events.setdefault(event["event_properties"]["ad_id"], event)
    delivered = [project.catalogue.ads[ad_id] for ad_id in events]
    built = [ad for ad in delivered if ad.utm_params and ad.smart_plus_ad_id is None]
    smart_plus = [ad for ad in delivered if ad.smart_plus_ad_id is not None]
    plain_landing = [ad for ad in built + smart_plus if "?" not in ad.landing_page]
    assert {ad.ad_id for ad in plain_landing} & {ad.ad_id for ad in built}, "no builder-made ad delivered"
    assert {ad.ad_id for ad in plain_landing} & {ad.ad_id for ad in smart_plus}, "no Smart+ ad delivered"
    for ad in plain_landing:
        event = events[ad.ad_id]
        assert event["user_properties"] == expected_utms(project, ad), ad.ad_id
        assert event["event_properties"]["ad_name"] == ad.name[:AMPLITUDE_MAX_STRING]
    # A landing page that sets a key itself keeps it: the builder's value is not taken over it.
    written = [ad for ad in built + smart_plus if "utm_source=tiktok&" in ad.landing_page]
    assert written and all(events[ad.ad_id]["user_properties"]["utm_source"] == "tiktok" for ad in written)
    # Nothing else changed: every ad-day arrived, with TikTok's figures.
    for offset in range((LAST - FIRST).days + 1):
        day = FIRST + timedelta(days=offset)
        assert project.amplitude_sums(day) == project.tiktok_truth(day)
