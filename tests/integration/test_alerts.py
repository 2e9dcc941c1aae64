"""The run-failure sensor of docs/when-tiktok-misbehaves.md, run as written: a failed run whose retries
ran out is posted to a webhook (a loopback HTTP server here) with the accounts and days not imported."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg
import pytest

from ..conftest import Project, ended_failed_after_delivering

PAGE = Path(__file__).resolve().parents[2] / "docs" / "when-tiktok-misbehaves.md"
EXAMPLE_MARKER = "<!-- example: run_failure_alert"
DAY = date(2025, 3, 2)


def page_example(tmp_path: Path) -> ModuleType:
    """The page's example code block, imported as the module ``alerts``."""
    text = PAGE.read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text[text.index(EXAMPLE_MARKER) :], re.DOTALL)
    assert code is not None, "the page's example has no python block after its marker"
    path = tmp_path / "alerts.py"
    path.write_text(code.group(1), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("alerts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["alerts"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["alerts"]
    return module


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A loopback webhook that keeps what is posted to it; ALERT_WEBHOOK_URL points at it."""
    posted: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_address[1]}/hook")
    try:
        yield posted
    finally:
        server.shutdown()
        server.server_close()


def test_a_failed_run_is_posted_with_the_accounts_not_imported_once_retries_ran_out(
    project: Project, tmp_path: Path, webhook: list[dict[str, Any]]
) -> None:
    alerts = page_example(tmp_path)
    assert isinstance(alerts.defs, dg.Definitions)
    sensor = alerts.tell_the_team
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    refused = project.advertiser_ids[1]
    project.tiktok.refuse_account(refused, code=40001)
    ended_failed_after_delivering(project.materialize(DAY, raise_on_error=False))
    run = project.instance.get_runs(limit=1)[0]
    failure_event = next(
        record.get_dagster_event()
        for record in project.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    )

    # A run Dagster will retry is left to its retry: nothing is posted.
    project.instance.add_run_tags(run.run_id, {"dagster/will_retry": "true"})
    waiting = project.instance.get_run_by_id(run.run_id)
    assert waiting is not None
    sensor(
        dg.build_run_status_sensor_context(
            sensor.name, failure_event, project.instance, waiting
        ).for_run_failure()
    )
    assert webhook == []

    # Retries ran out: the team hears of it, with the account and the day and what to do.
    project.instance.add_run_tags(run.run_id, {"dagster/will_retry": "false"})
    final = project.instance.get_run_by_id(run.run_id)
    assert final is not None
    sensor(
        dg.build_run_status_sensor_context(
            sensor.name, failure_event, project.instance, final
        ).for_run_failure()
    )
    (message,) = webhook
    text = message["text"]
    assert text.startswith(f"Dagster run {run.run_id} (tiktok_ads_job) failed")
    assert "every_account_day_imported: 1 of 2 ad accounts could not be imported" in text
    assert f"ad account {refused}: {DAY}" in text and "TIKTOK_ADVERTISER_IDS" in text
