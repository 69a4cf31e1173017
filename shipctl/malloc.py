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

Only the paths that move data call ``tune()`` (the first read of new log bytes, the first request of an
upload): loading ``ctypes`` costs ~0.5 MiB, which a no-op run does not pay. A setting the user made in the
environment (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``) is left alone. On a libc without ``mallopt``
(or one that ignores it, like musl) nothing changes.
"""

from __future__ import annotations

import os

# mallopt() parameters, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# Buffers from this size on get their own mapping: read buffers and batches (1 MiB) do; the 64 KiB pieces
# the sinks encode stay in the heap, where they are reused (256 KiB: another -0.3 MiB for +0.1 CPU-s/100 MB).
MMAP_THRESHOLD = 512 << 10

_tuned = False


def tune() -> None:
    """Fix the mmap threshold and cap the heaps at one, once per process (a second call does nothing)."""
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
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(M_ARENA_MAX, 1)
