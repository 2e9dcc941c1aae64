"""TikTok Ads daily ad metrics into Amplitude, as Dagster assets.

Two settings of the process's memory allocators are made here, on the first import of the package,
because both only take effect before the allocations they govern: a range run's process holds what
the allocators keep, and each step inherits what the steps before it left.
"""

import ctypes
import os
import sys

# Arrow's default allocator in the pyarrow wheels (mimalloc) keeps the memory Arrow frees for Arrow's
# later allocations, apart from the rest of the process: a range run's process held 15-20 MB more in
# the metrics step (Parquet writes, pandas conversions) than with the system allocator, whose freed
# memory Python's own objects reuse. Arrow reads the variable once, at its first allocation, so it
# is set here, before any module of this package imports pyarrow; a value set by the user wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

# glibc gives each new thread that allocates its own heap ("arena"), and memory freed in one arena
# serves only the threads of that arena: the metrics step's writer thread and process-pool thread and
# the upload's read-ahead thread each kept megabytes apart (year run: 6 MB more in the metrics step,
# 14 MB more in the upload step). One arena for every thread; the GIL serializes most allocations
# anyway (measured: no slower). Threads that already have an arena keep it; MALLOC_ARENA_MAX set by
# the user wins. Not glibc (macOS, musl): nothing to do.
_M_ARENA_MAX = -8  # glibc's malloc.h
if sys.platform == "linux" and "MALLOC_ARENA_MAX" not in os.environ:
    try:
        _mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:
        pass
    else:
        _mallopt(_M_ARENA_MAX, 1)
