"""Atomic files (flushed before they are named) and staged directory swaps: one holder at a
time, and no lock file left behind."""
import errno

import pytest

from npcf.utils.files import locked_dir, staged_dir


def test_staged_dir_swaps_in_and_leaves_no_lock_file(tmp_path):
    target = tmp_path / "out"
    with staged_dir(target) as stage:
        (stage / "a.txt").write_text("one")
        assert (tmp_path / ".out.lock").exists()          # held while the block runs
    assert (target / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_second_holder_is_refused_and_the_first_keeps_its_lock(tmp_path):
    target = tmp_path / "out"
    with staged_dir(target) as stage:
        (stage / "a.txt").write_text("first")
        with pytest.raises(OSError) as err:
            with staged_dir(target):
                pass
        assert err.value.errno == errno.EBUSY
    assert (target / "a.txt").read_text() == "first"
    with staged_dir(target) as stage:                       # free again afterwards
        (stage / "b.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_block_leaves_target_and_no_stray_files(tmp_path):
    target = tmp_path / "out"
    with staged_dir(target) as stage:
        (stage / "keep.txt").write_text("kept")
    with pytest.raises(RuntimeError):
        with staged_dir(target) as stage:
            (stage / "new.txt").write_text("lost")
            raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_directory_written_in_place_holds_the_same_lock(tmp_path):
    """A resumed run writes its directory in place: no staged swap may replace it
    meanwhile, and it may not start while a swap is under way."""
    target = tmp_path / "out"
    target.mkdir()
    with locked_dir(target) as where:
        assert where == target
        with pytest.raises(OSError) as err:
            with staged_dir(target):
                pass
        assert err.value.errno == errno.EBUSY
    with staged_dir(target):
        with pytest.raises(OSError):
            with locked_dir(target):
                pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_atomic_write_is_on_disk_before_its_name_is(tmp_path, monkeypatch):
    """fsync of the temporary file, then the rename, then fsync of the directory."""
    import os

    from npcf.utils import files
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(a, b):
        events.append(("replace", str(b)))
        real_replace(a, b)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    files.write_text(tmp_path / "a.txt", "hello")
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"], events
    assert events[0][1].startswith(str(tmp_path / ".a.txt."))     # the temporary file
    assert events[2][1] == str(tmp_path)
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_a_staged_directory_is_flushed_before_it_is_swapped_in(tmp_path, monkeypatch):
    import os
    events = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(a, b):
        events.append(("rename", str(b)))
        real_rename(a, b)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    with staged_dir(tmp_path / "out") as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "f.txt").write_text("x")
    flushed = [p for kind, p in events if kind == "fsync"]
    first_rename = next(i for i, (kind, _) in enumerate(events) if kind == "rename")
    assert any(p.endswith("sub/f.txt") for p in flushed[:first_rename])   # before the swap
    assert events[-1] == ("fsync", str(tmp_path))                          # then the parent
    assert (tmp_path / "out" / "sub" / "f.txt").read_text() == "x"
