"""The allocator setting training runs under: freed blocks are kept and reused."""
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from npcf.utils import memory

GLIBC = platform.libc_ver()[0] == "glibc"

# page faults of writing a fresh 40 MB block, after the same block was freed once
FAULTS = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from npcf.utils.memory import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    a = np.ones(10_000_000, np.float32); del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(10_000_000, np.float32)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _faults(mode: str) -> int:
    # glibc's defaults (no tunables, no other allocator) and 4 KiB pages where NumPy decides
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GLIBC_TUNABLES", "MALLOC_", "LD_PRELOAD"))}
    env["NUMPY_MADVISE_HUGEPAGE"] = "0"
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True,
                         check=True, timeout=60, env=env)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's")
def test_a_freed_block_is_reused_without_page_faults():
    fresh, kept = _faults("default"), _faults("keep")
    # glibc's default: an mmap per block, faulted in again (>= 20 faults even in 2 MB pages)
    assert fresh >= 20
    assert kept * 10 < fresh


def test_rejects_a_limit_that_is_not_positive():
    with pytest.raises(ValueError, match="positive"):
        memory.keep_freed_memory(0)


def test_false_where_the_c_library_has_no_mallopt(monkeypatch):
    def no_libc(name):
        raise OSError("no C library")
    monkeypatch.setattr(memory.ctypes, "CDLL", no_libc)
    assert memory.keep_freed_memory() is False


class FakeGlibc:
    """``mallopt`` of a glibc that takes mmap thresholds up to ``mmap_max`` only."""

    def __init__(self, mmap_max):
        self.calls = []

        def mallopt(param, value):          # a function: ctypes' argtypes can be set on it
            self.calls.append((param, value))
            return int(param != memory.M_MMAP_THRESHOLD or value <= mmap_max)
        self.mallopt = mallopt


def test_an_older_glibc_gets_its_highest_mmap_threshold_and_then_the_trim(monkeypatch):
    lib = FakeGlibc(memory.OLD_GLIBC_MAX)
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: lib)
    assert memory.keep_freed_memory() is True
    assert lib.calls == [(memory.M_MMAP_THRESHOLD, memory.KEEP_BYTES),
                         (memory.M_MMAP_THRESHOLD, memory.OLD_GLIBC_MAX),
                         (memory.M_TRIM_THRESHOLD, memory.KEEP_BYTES)]


def test_no_trim_setting_without_the_mmap_one(monkeypatch):
    """The trim threshold alone freezes glibc's adaptive mmap threshold at 128 KiB."""
    lib = FakeGlibc(0)
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda name: lib)
    assert memory.keep_freed_memory() is False
    assert all(param == memory.M_MMAP_THRESHOLD for param, _ in lib.calls)
