"""The training process's memory allocator: keep freed blocks for the next step.

A training step allocates and frees the same NumPy/SciPy temporaries of tens of MB every
time (activations, the touched rows' gradient, sparse products). With glibc's defaults a
block above the mmap threshold (128 KiB, raised as it goes up to 32 MiB) is a fresh
``mmap`` and goes back to the OS when freed, and a heap top above the trim threshold is
returned too; a worker thread's arena shrinks its heap the same way. Every step then
page-faults and zeroes the same memory again: ~10% of a full-scale step at 1 thread, and
the second thread's sparse products spent more time in page faults than in arithmetic
(``benchmarks/NOTES.md``, 2026-12-05). ``cli.py train`` calls :func:`keep_freed_memory`;
a library user training in a process of their own may call it once.
"""
from __future__ import annotations

import ctypes

#: glibc's ``mallopt`` parameters (``<malloc.h>``)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: blocks below this many bytes come from the heap, and up to this many freed bytes stay
#: with the process
KEEP_BYTES = 1 << 29
#: the highest mmap threshold older glibc takes (``HEAP_MAX_SIZE / 2`` on 64-bit; 2.36
#: takes more)
OLD_GLIBC_MAX = 1 << 25


def keep_freed_memory(limit: int = KEEP_BYTES) -> bool:
    """Best effort, for the whole process: blocks under ``limit`` bytes are served from
    the heap and up to ``limit`` freed bytes are kept for reuse instead of returned to the
    OS (on a glibc that caps the mmap threshold at 32 MiB, blocks under 32 MiB). The
    process keeps its high-water mark: memory freed after a peak (reading the data) stays
    with it until it exits. Returns True when glibc took the setting; False elsewhere
    (another C library, no ``mallopt``), where nothing changes."""
    limit = int(limit)
    if limit < 1:
        raise ValueError(f"limit must be a positive number of bytes, got {limit}")
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    limit = min(limit, 2**31 - 1)               # mallopt takes an int
    # the mmap threshold first: the trim threshold alone would freeze glibc's adaptive
    # mmap threshold at 128 KiB, far worse than its default
    tries = (limit,) if limit <= OLD_GLIBC_MAX else (limit, OLD_GLIBC_MAX)
    if not any(mallopt(M_MMAP_THRESHOLD, v) for v in tries):
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, limit))
