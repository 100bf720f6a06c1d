"""Memory that a streaming job frees goes back to the system (batch scoring, erasure: jobs whose peak must
not grow with the data; the settings stay with the process that made them)."""

from __future__ import annotations

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


def lean_allocators() -> None:
    """* Arrow's buffers (the Parquet writer and reader) from the C library's allocator: Arrow's default,
      mimalloc, kept freed batches resident;
    * glibc's mmap threshold fixed at its default 128 KiB: glibc otherwise raises it to the size of the
      first large buffer freed, serves later ones from a heap it rarely gives back, and the peak
      wandered by 2x from run to run (benchmarks/README.md, batch scoring)."""
    import ctypes
    import ctypes.util

    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        pass  # not glibc: the C library keeps its own policy
