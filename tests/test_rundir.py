"""npcf.rundir: names, the recorded data, fingerprints and history.csv."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

from npcf import rundir
from npcf.errors import NpcfError

from helpers import random_ratings


def test_names_and_folders(tmp_path):
    assert rundir.onnx_name() == "model.onnx" and rundir.onnx_name("int8") == "model.int8.onnx"
    (tmp_path / "model.npz").write_bytes(b"")
    assert rundir.folder_of(tmp_path / "model.npz") == tmp_path
    assert rundir.folder_of(tmp_path) == tmp_path
    assert rundir.member_dir(tmp_path, 2) == tmp_path / "members" / "2"


def test_recorded_data(tmp_path):
    assert rundir.recorded_data(tmp_path) is None
    data = tmp_path / "elsewhere"
    (tmp_path / "metrics.json").write_text(json.dumps({"data": str(data)}))
    assert rundir.recorded_data(tmp_path) is None           # no prepared data there
    data.mkdir()
    (data / "stats.json").write_text("{}")
    assert rundir.recorded_data(tmp_path) == data
    (tmp_path / "metrics.json").write_text("[]")             # not an object: nothing
    assert rundir.recorded_data(tmp_path) is None
    own = tmp_path / "data"                                  # the run's own data/ first
    own.mkdir()
    (own / "stats.json").write_text("{}")
    assert rundir.recorded_data(tmp_path) == own


def test_check_target_refuses_files_it_did_not_write(tmp_path):
    run = tmp_path / "run"
    assert rundir.check_target(run, rundir.RUN_ENTRIES, "run directory") == run   # new: fine
    run.mkdir()
    for name in ("model.npz", "model.fp16.onnx", "model.onnx.items.json", "history.csv",
                 ".model.npz.abc.tmp.npz.tmp"):
        (run / name).write_text("x")
    rundir.check_target(run, rundir.RUN_ENTRIES, "run directory")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(NpcfError, match="notes.txt"):
        rundir.check_target(run, rundir.RUN_ENTRIES, "run directory")
    with pytest.raises(NpcfError, match="is a file"):
        rundir.check_target(run / "notes.txt", rundir.RUN_ENTRIES, "run directory")
    (run / "notes.txt").unlink()
    with pytest.raises(NpcfError, match="own input"):
        rundir.check_target(run, rundir.RUN_ENTRIES, "run directory", inputs=[run / "model.npz"])


def test_check_target_refuses_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for target in (".", str(tmp_path.parent)):
        with pytest.raises(NpcfError, match="working directory"):
            rundir.check_target(target, ("*",), "run directory")


def test_fingerprint_sees_values_pattern_and_shape_not_entry_order():
    m = random_ratings(6, 5, 0.5, seed=1)
    f = rundir.fingerprint(m)
    assert f == rundir.fingerprint(m.copy()) and len(f) == 16
    other = m.copy()
    other.data[0] += 0.5
    assert rundir.fingerprint(other) != f
    assert rundir.fingerprint(sp.csr_matrix((7, 5))) != rundir.fingerprint(sp.csr_matrix((6, 5)))
    row = sp.csr_matrix((np.array([1.0, 2.0], np.float32), np.array([3, 1]), np.array([0, 2])),
                        shape=(1, 5))
    assert rundir.fingerprint(row) == rundir.fingerprint(row.sorted_indices())
    assert not row.has_sorted_indices                       # the input is left as it was


def test_history_round_trip(tmp_path):
    f = tmp_path / "history.csv"
    rows = [{"epoch": 1, "train_loss": 0.5, "val_rmse": 0.9}, {"epoch": 2, "train_loss": 0.4}]
    rundir.write_rows(f, rows, rundir.history_columns("mse"))
    assert rundir.history_header(f) == rundir.history_columns("mse")
    assert rundir.read_history(f) == rows
    assert rundir.read_history(tmp_path / "missing.csv") == []
    with pytest.raises(FileNotFoundError):
        rundir.read_history(tmp_path / "missing.csv", missing_ok=False)
    f.write_text("epoch,train_loss\n1,abc\n")
    with pytest.raises(ValueError, match="line 2: train_loss"):
        rundir.read_history(f)
