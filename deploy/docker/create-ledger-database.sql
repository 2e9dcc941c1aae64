-- The ledger of what Amplitude counted (TIKTOK_AMP_LEDGER_URL), in its own database next to
-- Dagster's. The postgres image runs this once, when it initialises an empty data volume; on an
-- existing server run it yourself: docker compose exec postgres psql -U dagster -c '...'.
CREATE DATABASE tiktok_amp_ledger OWNER dagster;
