"""Atomic files (flushed before they are named) and staged directory swaps: one holder at a
time, and no lock file left behind."""
import errno

import pytest

from npcf.utils.files import staged_dir, write_text


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


def test_a_swap_that_fails_removes_its_stage_and_keeps_the_target(tmp_path, monkeypatch):
    """A failed swap (e.g. EBUSY where the target is a mount point) left the whole
    finished stage behind as a hidden directory."""
    from npcf.utils import files
    target = tmp_path / "out"
    with staged_dir(target) as stage:
        (stage / "keep.txt").write_text("kept")

    def busy(new, old):
        raise OSError(errno.EBUSY, "Device or resource busy", str(old))
    monkeypatch.setattr(files, "swap_dir", busy)
    with pytest.raises(OSError, match="a mount point") as err:     # a bind mount: only the
        with staged_dir(target) as stage:                           # swap can tell
            (stage / "new.txt").write_text("lost")
    assert err.value.filename == str(target)
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_mount_point_is_refused_before_any_work(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    monkeypatch.setattr("os.path.ismount", lambda p: str(p) == str(target))
    ran = []
    with pytest.raises(OSError, match="a mount point") as err:
        with staged_dir(target):
            ran.append(1)
    assert err.value.errno == errno.EBUSY and not ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_directory_it_may_not_write_is_refused_before_any_work(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    monkeypatch.setattr("os.access", lambda p, mode: str(p) != str(target))  # (root may write all)
    with pytest.raises(PermissionError, match="not writable"):
        with staged_dir(target):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_stages_a_killed_command_left_are_removed_by_the_next_holder(tmp_path):
    target = tmp_path / "out"
    for name in (".out.k1lled_0.tmp", ".out.abcd1234.old"):     # as mkdtemp names them
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.npz").write_text("debris")
    (tmp_path / ".out.notes.tmp").mkdir()          # not npcf's name pattern: kept
    (tmp_path / ".outer.abcd1234.tmp").mkdir()     # another target's: kept
    with staged_dir(target) as stage:
        (stage / "a.txt").write_text("one")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.notes.tmp",
                                                          ".outer.abcd1234.tmp", "out"]


def test_a_stage_from_the_target_starts_as_its_copy_and_leaves_it_whole_on_error(tmp_path):
    """A resumed run continues its directory in a copy: the files are there (hard links),
    replacing one does not touch the target's, and a failed block leaves the target as
    it was."""
    target = tmp_path / "out"
    (target / "sub").mkdir(parents=True)
    (target / "a.txt").write_text("one")
    (target / "sub" / "b.txt").write_text("two")
    with pytest.raises(RuntimeError):
        with staged_dir(target, from_target=True) as stage:
            assert (stage / "a.txt").read_text() == "one"
            assert (stage / "sub" / "b.txt").read_text() == "two"
            write_text(stage / "a.txt", "changed")
            (stage / "sub" / "b.txt").unlink()
            raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "one"
    assert (target / "sub" / "b.txt").read_text() == "two"
    with staged_dir(target, from_target=True) as stage:
        write_text(stage / "a.txt", "changed")
    assert (target / "a.txt").read_text() == "changed"
    assert (target / "sub" / "b.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.fixture
def disk_events(monkeypatch):
    """Every fsync (the path flushed), os.replace and os.rename (the new name), in order."""
    import os
    events = []
    real = {"fsync": os.fsync, "replace": os.replace, "rename": os.rename}

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real["fsync"](fd)

    def renaming(kind):
        def fn(a, b):
            events.append((kind, str(b)))
            real[kind](a, b)
        return fn
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", renaming("replace"))
    monkeypatch.setattr(os, "rename", renaming("rename"))
    return events


def test_an_atomic_write_is_on_disk_before_its_name_is(tmp_path, disk_events):
    """fsync of the temporary file, then the rename, then fsync of the directory."""
    from npcf.utils import files
    files.write_text(tmp_path / "a.txt", "hello")
    kinds = [kind for kind, _ in disk_events]
    assert kinds == ["fsync", "replace", "fsync"], disk_events
    assert disk_events[0][1].startswith(str(tmp_path / ".a.txt."))     # the temporary file
    assert disk_events[2][1] == str(tmp_path)
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_a_staged_directory_is_flushed_before_it_is_swapped_in(tmp_path, disk_events):
    with staged_dir(tmp_path / "out") as stage:
        (stage / "sub").mkdir()
        (stage / "sub" / "f.txt").write_text("x")
    first_rename = next(i for i, (kind, _) in enumerate(disk_events) if kind == "rename")
    assert any(kind == "fsync" and p.endswith("sub/f.txt")
               for kind, p in disk_events[:first_rename])                 # before the swap
    assert disk_events[-1] == ("fsync", str(tmp_path))                     # then the parent
    assert (tmp_path / "out" / "sub" / "f.txt").read_text() == "x"


def test_a_swap_killed_between_its_renames_is_undone_by_the_next_holder(tmp_path):
    """Killed after renaming the old directory away and before renaming the new one in
    (the two-rename fallback): the old run must come back, not be cleared as debris."""
    (tmp_path / ".run.k1lled_0.old").mkdir()
    (tmp_path / ".run.k1lled_0.old" / "model.npz").write_text("the only copy")
    (tmp_path / ".run.n3wstage.tmp").mkdir()                  # the unfinished new one
    with pytest.raises(RuntimeError):
        with staged_dir(tmp_path / "run"):                    # even a command that fails
            raise RuntimeError("boom")
    assert (tmp_path / "run" / "model.npz").read_text() == "the only copy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_swap_failing_halfway_keeps_both_directories(tmp_path, monkeypatch):
    from npcf.utils import files
    target = tmp_path / "run"
    with staged_dir(target) as stage:
        (stage / "v").write_text("one")
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    real = files.os.rename

    def rename(src, dst):                      # the old one moves away; nothing else moves
        if str(dst).endswith(".old"):
            return real(src, dst)
        raise OSError(errno.EIO, "I/O error", str(src))
    monkeypatch.setattr(files.os, "rename", rename)
    with pytest.raises(OSError):
        with staged_dir(target) as stage:
            (stage / "v").write_text("two")
    monkeypatch.setattr(files.os, "rename", real)
    kept = sorted(p.name.rsplit(".", 1)[-1] for p in tmp_path.iterdir() if p.name != ".run.lock")
    assert kept == ["old", "tmp"] and not target.exists()     # both kept, nothing deleted
    with staged_dir(target) as stage:                          # the next holder puts it back
        assert (target / "v").read_text() == "one"
        (stage / "v").write_text("three")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.mark.parametrize("name", ["a" * 255, "\u00e9" * 127 + "z"])   # 255 and 255 bytes
def test_a_name_of_the_longest_length_gets_its_lock_and_stage(tmp_path, name):
    """`.NAME.lock` and `.NAME.xxxxxxxx.tmp` of a 250-255 byte name exceeded the 255-byte
    limit: `--out` of such a name was refused with 'File name too long'."""
    target = tmp_path / name
    with staged_dir(target) as stage:
        (stage / "a.txt").write_text("one")
    with staged_dir(target) as stage:                   # replaces it, the same way
        (stage / "a.txt").write_text("two")
    assert (target / "a.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_long_names_sharing_their_start_get_distinct_hidden_stems():
    from npcf.utils.files import HIDDEN_STEM_MAX, hidden_stem
    a, b = "x" * 250 + "1", "x" * 250 + "2"
    assert hidden_stem(a) != hidden_stem(b)
    assert len(hidden_stem(a).encode()) <= HIDDEN_STEM_MAX and hidden_stem("short") == "short"
