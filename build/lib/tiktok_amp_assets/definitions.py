"""The Dagster code location: ``dagster dev -w workspace.yaml`` loads ``defs`` from here."""

from tiktok_amp_assets.code_location import build_definitions
from tiktok_amp_assets.settings import ProjectSettings

defs = build_definitions(ProjectSettings.from_env())
