"""Names the assets, their checks and the tests share; a connection prefixes the asset keys with its
name (connection.py)."""

RAW_ASSET = "tiktok_raw_reports"
METRICS_ASSET = "tiktok_ad_metrics"
UPLOAD_ASSET = "amplitude_upload_results"
TIMEZONE_CHECK = "account_timezone_matches_partitions"
RECONCILIATION_CHECK = "rows_add_up_to_account_totals"
DELIVERY_CHECK = "amplitude_counts_equal_tiktok"
ACCOUNTS_CHECK = "every_account_day_imported"
# Loads tiktok_ad_metrics as a pandas DataFrame into downstream assets (io_managers.py); the
# resource key is the connection's name and this, such as acme_tiktok_ad_metrics_io_manager.
METRICS_IO_MANAGER = "tiktok_ad_metrics_io_manager"
