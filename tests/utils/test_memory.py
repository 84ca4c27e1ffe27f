"""The allocator setting training runs under: freed blocks are kept and reused."""
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
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True,
                         check=True, timeout=60)
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
