"""How failed account-days come back: the run retries all its steps, and a retry fetches only them.

A run that recorded failed account-days delivers every other account and then ends failed (the
upload's blocking check ``every_account_day_imported``). Dagster's run retries re-execute a failed
run "from failure" by default (only the failed steps: here the upload, which cannot fetch anything),
and retry a run whose step failed only when asked to (Dagster's run retries docs; tags read by
``dagster._daemon.auto_run_reexecution``). The runs that reach this project have no tags in common
to carry that request: the schedule's runs are the job's, but a backfill launched from the UI runs
Dagster's implicit asset job with the backfill's own tags, and the instance has no setting for the
strategy. So the step that records a failed account-day tags its own run: retry it on a step
failure, with all steps. The retry then inherits the run's tags (and partitions), and its raw step
fetches only the account-days recorded as failed (:func:`parent_fetched_every_account`). The
instance's ``run_retries`` (``enabled``, ``max_retries``) still decide whether and how often.
"""

from __future__ import annotations

import dagster as dg

RETRY_ON_STEP_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"
RETRY_STRATEGY_TAG = "dagster/retry_strategy"
ALL_STEPS = "ALL_STEPS"
PARENT_RUN_ID_TAG = "dagster/parent_run_id"


def retry_all_steps_if_the_run_fails(context: dg.AssetExecutionContext) -> None:
    """Tag this run so that the run retry daemon re-executes all of its steps when it fails; tags the
    launcher or the user set already are kept."""
    tags = context.run.tags
    wanted = {RETRY_ON_STEP_FAILURE_TAG: "true", RETRY_STRATEGY_TAG: ALL_STEPS}
    missing = {name: value for name, value in wanted.items() if name not in tags}
    if missing:
        context.instance.add_run_tags(context.run.run_id, missing)


def parent_fetched_every_account(context: dg.AssetExecutionContext, raw_step: str) -> str | None:
    """The id of the run this one re-executes (a retry, or a re-execution from the UI), when that
    run's raw step (``raw_step``, the connection's) finished: then every account-day it could not fetch is recorded as failed, and
    the others are stored. None for a first run, or when the parent's raw step did not finish (a
    process that died, a token refused): then everything is fetched again."""
    parent_run_id = context.run.tags.get(PARENT_RUN_ID_TAG)
    if parent_run_id is None:
        return None
    stats = context.instance.get_run_step_stats(parent_run_id, step_keys=[raw_step])
    finished = any(stat.status is not None and stat.status.value == "SUCCESS" for stat in stats)
    return parent_run_id if finished else None
