"""The Dagster code location: ``dagster dev -w workspace.yaml`` loads ``defs`` from here: every
connection under ``tiktok_amp_assets/defs/`` (code_location.load_definitions)."""

from tiktok_amp_assets.code_location import load_definitions

defs = load_definitions()
