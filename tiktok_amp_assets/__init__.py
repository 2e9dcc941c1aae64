"""TikTok Ads daily ad metrics into Amplitude, as Dagster assets."""

import os

# Arrow's default allocator in the pyarrow wheels (mimalloc) keeps the memory Arrow frees for Arrow's
# later allocations, apart from the rest of the process: a range run's process held 15-20 MB more in
# the metrics step (Parquet writes, pandas conversions) than with the system allocator, whose freed
# memory Python's own objects reuse. Arrow reads the variable once, at its first allocation, so it
# is set here, before any module of this package imports pyarrow; a value set by the user wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
