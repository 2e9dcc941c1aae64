"""The CI-sized run of bench/reliability.py: faults at 20% on both APIs, TikTok restricting the app and
in maintenance for seconds (minutes in the script), an account TikTok refuses, spend no ad row holds,
six SIGKILLs, one re-run.

The script is the proof users read (60 days, its table in the closing note); this runs the same
code on a month, so a change that loses or doubles an ad-day under faults and kills turns CI red.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ..postgres_server import skip_or_fail_without_postgres

BENCH = Path(__file__).resolve().parents[2] / "bench" / "reliability.py"


def _reliability_script() -> ModuleType:
    # It imports its neighbour bench/cluster_state.py, found on the path when run from bench/.
    if str(BENCH.parent) not in sys.path:
        sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("reliability", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_faults_and_kills_lose_nothing_and_double_nothing() -> None:
    # 31 days of 40 ads in 2 accounts: two report windows of up to 2 pages each per account and
    # about thirty upload requests of 50 events, so every one of the six kill points falls mid-run.
    report = _reliability_script().run(
        days=31, ads=40, kills=6, fault_rate=0.2, seed=8, restriction_seconds=4
    )

    assert len(report.kills) == 6, f"only these kill points were reached: {report.kills}"
    assert report.faults_tiktok > 0 and report.faults_amplitude > 0
    assert report.retries > 0
    assert report.ad_days_checked > 31 * 2 * 20  # most ads run on most days
    assert report.duplicates == 0
    assert report.discrepancies == []
    # The unreadable account: named by the final run (and any run that got that far), never counted.
    assert report.unreadable_accounts_named >= 1 and report.unreadable_ad_days_counted == 0
    assert report.unattributed_account_days == 5


def test_faults_and_kills_on_s3_and_postgres_lose_nothing_and_double_nothing() -> None:
    """The same with the state as a cluster keeps it: the data folder in S3, the ledger in PostgreSQL."""
    skip_or_fail_without_postgres()
    report = _reliability_script().run(
        days=20, ads=30, kills=6, fault_rate=0.2, seed=8, state="cluster", restriction_seconds=0
    )

    assert len(report.kills) == 6, f"only these kill points were reached: {report.kills}"
    assert report.faults_tiktok > 0 and report.faults_amplitude > 0
    assert report.duplicates == 0
    assert report.discrepancies == []
    assert report.unreadable_ad_days_counted == 0
