"""Names the assets, their checks, the job and the tests share."""

GROUP = "tiktok_ads"
# Concurrency pools: cap how many steps call each API at once across all runs (dagster.yaml).
TIKTOK_POOL = "tiktok_api"
AMPLITUDE_POOL = "amplitude_api"
RAW_ASSET = "tiktok_raw_reports"
METRICS_ASSET = "tiktok_ad_metrics"
UPLOAD_ASSET = "amplitude_upload_results"
TIMEZONE_CHECK = "account_timezone_matches_partitions"
RECONCILIATION_CHECK = "rows_add_up_to_account_totals"
DELIVERY_CHECK = "amplitude_counts_equal_tiktok"
ACCOUNTS_CHECK = "every_account_day_imported"
# Loads tiktok_ad_metrics as a pandas DataFrame into downstream assets (io_managers.py).
METRICS_IO_MANAGER = "tiktok_ad_metrics_io_manager"
