"""deploy/helm/values.yaml against the Dagster Helm chart's own JSON Schema, as Helm checks values at
`helm install`/`upgrade` (nothing in this repository renders or installs the chart).

The schema, dagster_chart_values.schema.json beside this file, is the chart's values.schema.json
exactly as stored from dagster-io/dagster (helm/dagster/values.schema.json at commit
bdb8547fab497826eeec292bc160b549a0a329ef): the only version of that file this project's source
store holds, not the 1.13.27 tag, and older than it. It predates the chart's `concurrency` values,
which it lets through unchecked (its top level is open); so `concurrency` is also checked here
against the chart's model of it (helm/dagster/schema/schema/charts/dagster/subschema/concurrency.py,
dagster-io/dagster at commit 0f2d9d8ee1755dff289e167e49167d87f4977a9f), written below as JSON Schema.

Two departures from Helm, both toward checking less, never more:
- Helm validates the chart's defaults merged with these values. This repository holds no copy of
  the chart's values.yaml, so values.yaml is checked as the overlay it is: every key it sets must
  be one the schema allows, with the right type, but `required` is not enforced (the defaults
  supply those keys).
- The schema's references to Kubernetes' own definitions (kubernetesjsonschema.dev: resources,
  affinity, probes...) cannot be fetched here; they accept anything.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from ..processes import PROJECT_ROOT

VALUES = PROJECT_ROOT / "deploy" / "helm" / "values.yaml"
CHART_SCHEMA = Path(__file__).with_name("dagster_chart_values.schema.json")

# concurrency.py's Concurrency model (pydantic, extra="forbid" throughout), as JSON Schema.
CONCURRENCY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "enabled": {"type": "boolean"},
        "pools": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "defaultLimit": {"type": ["integer", "null"]},
                "granularity": {"type": ["string", "null"]},  # "run" or "op"
                "opGranularityRunBuffer": {"type": ["integer", "null"]},
            },
        },
        "runs": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "maxConcurrentRuns": {"type": ["integer", "null"]},
                "tagConcurrencyLimits": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["key", "limit"],
                        "properties": {
                            "key": {"type": "string"},
                            "value": {"type": ["string", "object", "null"]},
                            "limit": {"type": "integer"},
                        },
                    },
                },
            },
        },
    },
}


def _remote_references(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str) and not value.startswith("#"):
                yield value
            else:
                yield from _remote_references(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _remote_references(item)


def _anything_registry(schema: dict[str, Any]) -> Registry:
    """Each remote document the schema refers to, as one where every referenced pointer is ``{}``."""
    documents: dict[str, dict[str, Any]] = {}
    for reference in _remote_references(schema):
        uri, _, pointer = reference.partition("#")
        node = documents.setdefault(uri, {})
        for part in pointer.strip("/").split("/"):
            node = node.setdefault(part, {})
    return Registry().with_resources(
        (uri, Resource.from_contents(document, default_specification=DRAFT7))
        for uri, document in documents.items()
    )


# The overlay check: Draft 7, as the chart's schema is written, without `required`.
OverlayValidator = jsonschema.validators.extend(
    jsonschema.Draft7Validator, {"required": lambda validator, required, instance, schema: iter(())}
)


def overlay_errors(values: dict[str, Any]) -> list[str]:
    schema = json.loads(CHART_SCHEMA.read_text())
    validator = OverlayValidator(schema, registry=_anything_registry(schema))
    errors = [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(values)
    ]
    concurrency = jsonschema.Draft7Validator(CONCURRENCY_SCHEMA)
    errors += [
        f"concurrency.{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in concurrency.iter_errors(values.get("concurrency", {}))
    ]
    return errors


@pytest.fixture
def values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


def test_the_schema_is_the_chart_file_as_stored() -> None:
    """The file as fetched (json.dumps with indent=4 is how the chart generates it): no edit crept in."""
    text = CHART_SCHEMA.read_text()
    schema = json.loads(text)
    assert schema["title"] == "DagsterHelmValues" and len(text) == 100_951
    assert json.dumps(schema, indent=4) + "\n" == text


def test_the_helm_values_match_the_dagster_charts_schema(values: dict[str, Any]) -> None:
    assert overlay_errors(values) == []
    # What the deployment depends on is there: the K8sRunLauncher, this code location, the queue.
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "tiktok_amp_assets.definitions"]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert values["dagsterDaemon"]["runRetries"]["retryOnAssetOrOpFailure"] is True


@pytest.mark.parametrize(
    ("change", "says"),
    [
        pytest.param(
            lambda v: v["runLauncher"].update(type="DockerRunLauncher"),
            "runLauncher.type",
            id="launcher-unknown",
        ),
        pytest.param(lambda v: v["telemetry"].update(enable=False), "telemetry", id="key-misspelt"),
        pytest.param(
            lambda v: v["dagster-user-deployments"]["deployments"][0].update(port="4000"),
            "dagster-user-deployments.deployments.0.port",
            id="port-a-string",
        ),
        pytest.param(
            lambda v: v["postgresql"]["service"].update(port="5432"),
            "postgresql.service.port",
            id="pg-port-a-string",
        ),
        pytest.param(
            lambda v: v["concurrency"]["pools"].update(defaultlimit=1),
            "concurrency.pools",
            id="pool-key-misspelt",
        ),
        pytest.param(
            lambda v: v["concurrency"]["runs"]["tagConcurrencyLimits"][0].update(limit="2"),
            "concurrency.runs",
            id="limit-a-string",
        ),
    ],
)
def test_the_check_refuses_values_the_chart_would_refuse(values: dict[str, Any], change, says: str) -> None:
    changed = copy.deepcopy(values)
    change(changed)
    errors = overlay_errors(changed)
    assert any(error.startswith(says) for error in errors), errors
