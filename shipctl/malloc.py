"""Settings of glibc's allocator for a run that moves data (issue 13: peak RSS).

Two defaults of glibc cost several MiB of peak RSS when batches of ~1 MiB are made in one thread and freed
in another (read, inflated, encoded, deflated, written):

- its *dynamic* mmap threshold: after the first ~1 MiB buffer that was mmapped is freed, the threshold rises
  to 1 MiB and later buffers come from the heaps instead, where freed ones linger (they are only given back
  when the top of a heap is free). A fixed threshold keeps such buffers in their own mappings, unmapped
  (out of RSS) when freed; measured +0.05 system CPU-s per 100 MB of log for the mmap/munmap calls;
- one heap ("arena") per thread that allocates: each keeps its own freed memory. With the GIL, threads
  seldom allocate at the same time, so one shared heap costs no measurable CPU here.

Measured on the ``file`` sink's ``run`` of a 116 MB log: 40.4 -> 38.4 MiB peak RSS, same CPU (37.5 if set
before any thread starts, but then every no-op run would load ``ctypes``).

An ``upload`` to one sink (not beside tail-once in ``run``, nor beside another sink's thread) takes the other
side of that trade (``heap=True``): buffers up to 4 MiB come from the heap and stay there when freed (trim
threshold 64 MiB), so each 1 MiB payload and ~650 KB request body reuses memory instead of faulting in a fresh
mapping page by page (measured on a 116 MB upload: 44,500 -> 5,800 minor faults, 0.23 -> 0.13 system CPU-s,
~10% less wall time, +1.8 MiB peak RSS: 31.7 -> 33.5). In ``run`` the same setting made the peak up to 41.7
MiB, with tail-once's buffers alive too, and an upload to two sinks 42.4 (37.5 without).

Only the paths that move data call ``tune()`` (the first read of new log bytes, the first request of an
upload): loading ``ctypes`` costs ~0.5 MiB, which a no-op run does not pay. A setting the user made in the
environment (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``) is left alone. On a
libc without ``mallopt`` (or one that ignores it, like musl) nothing changes.
"""

from __future__ import annotations

import os

# mallopt() parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# Buffers from this size on get their own mapping: read buffers and batches (1 MiB) do; the 64 KiB pieces
# the sinks encode stay in the heap, where they are reused (256 KiB: another -0.3 MiB for +0.1 CPU-s/100 MB).
MMAP_THRESHOLD = 512 << 10
HEAP_MMAP_THRESHOLD = 4 << 20  # heap=True: every buffer of a batch's size stays in the heap
HEAP_TRIM_THRESHOLD = 64 << 20  # heap=True: freed memory at the top of the heap is kept for the next one

_tuned = False


def tune(*, heap: bool = False) -> None:
    """Fix the mmap threshold and cap the heaps at one, once per process (a second call does nothing);
    ``heap``: keep batch-sized buffers in the heap (see above)."""
    global _tuned
    if _tuned:
        return
    _tuned = True  # two threads racing here would both call mallopt() with the same values: harmless
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to load, or one without mallopt
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD if heap else MMAP_THRESHOLD)
    if heap and "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD)
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(M_ARENA_MAX, 1)
