"""Tests for npcf.autoencoder.checkpoint: bit-exact round trips without pickle, and every corrupt,
missing or incompatible checkpoint raising CheckpointError with a clear message."""
from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

import npcf
from npcf import AutoEncoder, Vocabulary
from npcf.autoencoder.callbacks import Checkpoint
from npcf.errors import CheckpointError

from helpers import tiny_ratings

X = tiny_ratings()
BASE = dict(layers=(8, 4), n_epochs=2, batch_size=10, seed=0)
USERS = Vocabulary(np.arange(100, 100 + X.shape[0]) * 7)
ITEMS = Vocabulary([f"movie-{i}" for i in range(X.shape[1])])


def fit(tmp_path, name="m", **kw):
    model = AutoEncoder(**dict(BASE, **kw)).fit(X, users=USERS, items=ITEMS)
    path = tmp_path / name
    model.save(path)
    return model, path


CONFIGS = {
    "residual_tied": {},
    "untied_no_residual": dict(tied=False, residual=False, activation="tanh",
                               output_activation="sigmoid", dropout=0.2),
    "item_based": dict(item_based=True),
    "multinomial": dict(loss="multinomial"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_trip_is_bit_exact(tmp_path, name):
    model, path = fit(tmp_path, **CONFIGS[name])
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "model.npz"]  # no temp files
    for where in (path, path / "model.npz", path / "model.json"):
        loaded = AutoEncoder.load(where)
        assert loaded.get_params() == model.get_params()
        assert set(loaded.network.params) == set(model.network.params)
        for k, v in model.network.params.items():
            w = loaded.network.params[k]
            assert w.dtype == v.dtype and w.shape == v.shape
            np.testing.assert_array_equal(w, v, err_msg=k)
        assert loaded.network.tied == model.network.tied
        assert loaded.network.activation == model.network.activation
        assert loaded.network.output_activation == model.network.output_activation
        assert loaded.scale == model.scale
        assert loaded.users == USERS and loaded.items == ITEMS
        assert loaded.users.ids.dtype.kind == "i" and loaded.items.ids.dtype.kind == "U"
        assert loaded.info == model.info and loaded.info["fingerprint"]
        if model.item_counts is not None:
            np.testing.assert_array_equal(loaded.item_counts, model.item_counts)
        if model.baseline is None:
            assert loaded.baseline is None
        else:
            assert loaded.baseline.mu == model.baseline.mu
            assert (loaded.baseline.reg_row, loaded.baseline.reg_col) == \
                (model.baseline.reg_row, model.baseline.reg_col)
            np.testing.assert_array_equal(loaded.baseline.col_bias, model.baseline.col_bias)
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        coo = X.tocoo()
        np.testing.assert_array_equal(loaded.predict_at(X, coo.row, coo.col),
                                      model.predict_at(X, coo.row, coo.col))
    np.testing.assert_array_equal(npcf.load(path).predict(X), model.predict(X))


def test_checkpoint_needs_no_pickle(tmp_path):
    _, path = fit(tmp_path)
    with np.load(path / "model.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    assert all(a.dtype != object for a in arrays.values())
    assert {"param/W0", "param/W1", "param/b0", "users/ids", "items/ids",
            "baseline/col_bias"} <= set(arrays)
    meta = json.loads((path / "model.json").read_text())
    assert meta["format"] == "npcf-autoencoder" and meta["architecture"]["layers"] == [8, 4]
    assert meta["n_users"] == X.shape[0] and meta["n_items"] == X.shape[1]


def test_fit_with_out_writes_the_final_model(tmp_path):
    model = AutoEncoder(**BASE).fit(X, callbacks=[Checkpoint(tmp_path)])
    loaded = AutoEncoder.load(tmp_path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_saving_twice_overwrites_atomically(tmp_path):
    a, path = fit(tmp_path)
    b = AutoEncoder(**dict(BASE, seed=1)).fit(X)
    b.save(path)
    np.testing.assert_array_equal(AutoEncoder.load(path).predict(X), b.predict(X))
    assert not np.array_equal(a.predict(X), b.predict(X))
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "model.npz"]


# ------------------------------------------------------------------------- bad files
def load_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        AutoEncoder.load(path)
    msg = str(info.value)
    assert "\n" not in msg.strip() and len(msg) < 400
    return msg


def test_unfitted_model_cannot_be_saved(tmp_path):
    with pytest.raises(CheckpointError, match="not fitted"):
        AutoEncoder().save(tmp_path / "x")
    assert not (tmp_path / "x" / "model.npz").exists()


def test_missing_directory_and_files(tmp_path):
    assert "no such model directory" in load_error(tmp_path / "nowhere")
    assert f"{tmp_path / 'nope.npz'}: no such checkpoint file" in load_error(tmp_path / "nope.npz")
    _, path = fit(tmp_path)
    (path / "model.json").unlink()
    msg = load_error(path)                # the file the user has, then the one missing
    assert msg.startswith(f"{path / 'model.npz'}: its model.json ") and "is missing" in msg
    _, path = fit(tmp_path, "m2")
    (path / "model.npz").unlink()
    assert load_error(path).startswith(f"{path / 'model.json'}: its model.npz ")


@pytest.mark.parametrize("content", ["{not json", "", "[1, 2]", '{"format": "something-else"}',
                                     '{"format": "npcf-autoencoder", "format_version": "1"}'])
def test_corrupt_or_foreign_metadata(tmp_path, content):
    _, path = fit(tmp_path)
    (path / "model.json").write_text(content)
    msg = load_error(path)
    assert "model.json" in msg
    assert "corrupt" in msg or "not an npcf model" in msg


def test_newer_format_version_asks_to_upgrade(tmp_path):
    _, path = fit(tmp_path)
    meta = json.loads((path / "model.json").read_text())
    meta["format_version"] = 999
    meta["npcf_version"] = "9.9"
    (path / "model.json").write_text(json.dumps(meta))
    msg = load_error(path)
    assert "newer npcf" in msg and "9.9" in msg


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "bad_member", "bit_flip"])
def test_corrupt_weights(tmp_path, damage):
    _, path = fit(tmp_path)
    npz = path / "model.npz"
    raw = npz.read_bytes()
    if damage == "truncated":
        npz.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        npz.write_bytes(b"this is not a zip file at all" * 10)
    elif damage == "empty":
        npz.write_bytes(b"")
    elif damage == "bit_flip":       # inside W0's data: the zip CRC check must catch it
        with zipfile.ZipFile(npz) as z:
            info = z.getinfo("param/W0.npy")
        at = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
        npz.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1:])
    else:  # a valid zip whose member is not an array
        with zipfile.ZipFile(npz, "w") as z:
            z.writestr("param/W0.npy", b"\x93NUMPY garbage")
    msg = load_error(path)
    assert "model.npz" in msg


def test_pickled_arrays_are_refused(tmp_path):
    _, path = fit(tmp_path)
    with np.load(path / "model.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["items/ids"] = np.array([object()] * X.shape[1], dtype=object)
    np.savez(path / "model.npz", **arrays)
    msg = load_error(path)
    assert "model.npz" in msg and "pickled" in msg and "allow_pickle" not in msg


def untag(path) -> None:
    """Rewrite ``path``'s pair as a pre-tag npcf would have written it (no pair tag)."""
    with np.load(path / "model.npz") as f:
        arrays = {k: f[k] for k in f.files if k != "format/pair"}
    np.savez(path / "model.npz", **arrays)
    meta = json.loads((path / "model.json").read_text())
    del meta["pair"]
    (path / "model.json").write_text(json.dumps(meta))


def test_weights_of_another_architecture(tmp_path):
    _, path = fit(tmp_path)
    _, other = fit(tmp_path, "other", layers=(6, 4))
    untag(path)
    untag(other)
    shutil.copy(other / "model.npz", path / "model.npz")
    msg = load_error(path)
    assert "do not match model.json" in msg and "W0" in msg


def test_switches_and_sizes_older_npcf_saved_as_numbers_still_load(tmp_path):
    """npcf before 2026-12-04 took denoise=0, item_based=1 or layers=(8.0,) and saved them."""
    a, path = fit(tmp_path)
    meta = json.loads((path / "model.json").read_text())
    meta["hyperparameters"].update(denoise=0, residual=1, layers=[8.0, 4.0])
    (path / "model.json").write_text(json.dumps(meta))
    b = AutoEncoder.load(path)
    assert (b.denoise, b.residual, b.layers) == (False, True, (8, 4))
    np.testing.assert_array_equal(b.predict(X), a.predict(X))


def test_a_pair_from_untagged_files_still_loads(tmp_path):
    a, path = fit(tmp_path)
    untag(path)
    np.testing.assert_array_equal(AutoEncoder.load(path).predict(X), a.predict(X))


@pytest.mark.parametrize("which", ["npz", "json"])
def test_a_save_interrupted_between_the_two_files_is_refused(tmp_path, which):
    """Another model's npz under this json (or the other way round), as a save stopped
    after its first rename leaves them, even with the same architecture."""
    _, path = fit(tmp_path)
    _, other = fit(tmp_path, "other", seed=5)
    shutil.copy(other / f"model.{which}", path / f"model.{which}")
    msg = load_error(path)
    assert "model.npz" in msg and "interrupted" in msg


def test_one_untagged_file_of_a_pair_is_refused(tmp_path):
    _, path = fit(tmp_path)
    _, other = fit(tmp_path, "other", seed=5)
    untag(other)
    shutil.copy(other / "model.npz", path / "model.npz")
    assert "interrupted" in load_error(path)


def test_save_stops_before_replacing_either_file(tmp_path, monkeypatch):
    """An error while the second file is written leaves the old pair as it was."""
    a, path = fit(tmp_path)
    b = AutoEncoder(**dict(BASE, seed=1)).fit(X)

    def broken(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr("npcf.autoencoder.checkpoint.json_text", broken)
    with pytest.raises(KeyboardInterrupt):
        b.save(path)
    monkeypatch.undo()
    np.testing.assert_array_equal(AutoEncoder.load(path).predict(X), a.predict(X))
    assert sorted(p.name for p in path.iterdir()) == ["model.json", "model.npz"]


def test_an_unwritable_place_is_one_clear_error(tmp_path):
    a = AutoEncoder(**BASE).fit(X)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="file/sub: cannot write the model"):
        a.save(tmp_path / "file" / "sub")


@pytest.mark.parametrize("name, size", [("items/ids", 3), ("items/counts", 3),
                                        ("items/ids", None)])
def test_id_arrays_of_the_wrong_length_are_refused(tmp_path, name, size):
    _, path = fit(tmp_path)
    with np.load(path / "model.npz") as f:
        arrays = dict(f)
    arrays[name] = arrays[name][:size] if size else arrays[name].reshape(1, -1)
    np.savez(path / "model.npz", **arrays)
    assert f"model.npz: {name} holds" in load_error(path)



@pytest.mark.parametrize("bad", ["negative", "nan", "float", "more_than_users"])
def test_item_counts_that_are_not_counts_are_refused(tmp_path, bad):
    _, path = fit(tmp_path)
    with np.load(path / "model.npz") as f:
        arrays = dict(f)
    counts = arrays["items/counts"]
    arrays["items/counts"] = {"negative": counts - 10**6, "nan": np.full(counts.shape, np.nan),
                              "float": counts + 0.5, "more_than_users": counts + 2**40}[bad]
    np.savez(path / "model.npz", **arrays)
    assert "items/counts: not whole numbers from 0 to the number of users" in load_error(path)


@pytest.mark.parametrize("name", ["items/ids", "users/ids"])
def test_an_id_map_the_model_was_saved_with_cannot_go_missing(tmp_path, name):
    _, path = fit(tmp_path)                  # without it every id would be renumbered
    with np.load(path / "model.npz") as f:
        arrays = {k: v for k, v in f.items() if k != name}
    np.savez(path / "model.npz", **arrays)
    assert f"model.npz: {name}: missing (the model was saved with" in load_error(path)


def test_arrays_of_no_blend_member_are_refused(tmp_path):
    _, path = fit(tmp_path)
    with np.load(path / "model.npz") as f:
        arrays = dict(f)
    arrays["blend0/param/W0"] = arrays["param/W0"]       # model.json lists no blend
    np.savez(path / "model.npz", **arrays)
    assert "blend0: arrays of no blend member model.json lists" in load_error(path)

def test_save_to_a_named_npz_file(tmp_path):
    a = AutoEncoder(**BASE).fit(X)
    a.save(tmp_path / "d" / "best.npz")
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["best.json", "best.npz"]
    np.testing.assert_array_equal(AutoEncoder.load(tmp_path / "d" / "best.npz").predict(X),
                                  a.predict(X))
    (tmp_path / "plain").write_text("x")
    with pytest.raises(CheckpointError, match="plain: exists and is not a directory"):
        a.save(tmp_path / "plain")
    assert (tmp_path / "plain").read_text() == "x"


def test_missing_parameter(tmp_path):
    _, path = fit(tmp_path, tied=False)
    with np.load(path / "model.npz") as f:
        arrays = {k: f[k] for k in f.files if k != "param/V1"}
    np.savez(path / "model.npz", **arrays)
    msg = load_error(path)
    assert "missing" in msg and "V1" in msg


def test_missing_baseline_biases(tmp_path):
    _, path = fit(tmp_path)
    with np.load(path / "model.npz") as f:
        arrays = {k: f[k] for k in f.files if not k.startswith("baseline/")}
    np.savez(path / "model.npz", **arrays)
    assert "baseline" in load_error(path)


@pytest.mark.parametrize("key", ["architecture", "hyperparameters"])
def test_metadata_missing_a_section(tmp_path, key):
    _, path = fit(tmp_path)
    meta = json.loads((path / "model.json").read_text())
    del meta[key]
    (path / "model.json").write_text(json.dumps(meta))
    assert "model.json" in load_error(path)


def test_metadata_with_unknown_hyperparameter(tmp_path):
    _, path = fit(tmp_path)
    meta = json.loads((path / "model.json").read_text())
    meta["hyperparameters"]["warp_drive"] = True
    (path / "model.json").write_text(json.dumps(meta))
    assert "warp_drive" in load_error(path)


def test_a_named_checkpoint_file_is_the_one_loaded(tmp_path):
    a, path = fit(tmp_path, "run")
    b, other = fit(tmp_path, "other", seed=3)
    shutil.copy(other / "model.npz", path / "second.npz")
    shutil.copy(other / "model.json", path / "second.json")
    x = X[:5]
    np.testing.assert_array_equal(AutoEncoder.load(path / "second.npz").predict(x), b.predict(x))
    np.testing.assert_array_equal(npcf.load(path / "model.npz").predict(x), a.predict(x))
    np.testing.assert_array_equal(npcf.load(path / "second.json").predict(x), b.predict(x))
    msg = load_error(path / "third.npz")            # never falls back to model.npz
    assert "third.npz" in msg and "model.npz" not in msg
    (path / "second.json").unlink()
    assert "second.npz: its second.json (a checkpoint is a second.npz + second.json pair" \
        in load_error(path / "second.npz")
    (path / "notes.txt").write_text("x")
    assert "not a checkpoint" in load_error(path / "notes.txt")


def test_random_bytes_are_not_called_a_pickle(tmp_path):
    _, path = fit(tmp_path)
    (path / "model.npz").write_bytes(np.random.default_rng(0).bytes(4000))
    msg = load_error(path)
    assert "not an .npz archive" in msg and "pickle" not in msg


def test_an_ensemble_loads_with_the_layers_it_was_given(tmp_path):
    """An ensemble's network is K times wider; its saved layers are still the members'
    (it loaded K times wider, and a clone or refit then trained a wider ensemble)."""
    a, path = fit(tmp_path, layers=(6,), ensemble=2, n_epochs=1)
    b = AutoEncoder.load(path)
    assert b.layers == (6,) and b.get_params() == a.get_params()
    assert b.network.layers == a.network.layers == (12,)
    np.testing.assert_array_equal(b.predict(X), a.predict(X))


@pytest.mark.parametrize("edit, needle", [
    (lambda m: m["hyperparameters"].update(layers=[7, 4]), "disagree with the network"),
    (lambda m: m["hyperparameters"].update(activation="relu"),
     "activation 'relu' disagrees"),
    (lambda m: m["hyperparameters"].update(item_based=True), "item_based"),
    (lambda m: m.update(scale=[5, 0.5]), "scale"),
    (lambda m: m.update(scale=[float("nan"), 5]), "scale"),
    (lambda m: m["baseline"].update(mu=float("nan")), "baseline"),
    (lambda m: m.update(baseline=None), "no baseline"),
])
def test_metadata_contradicting_the_network_is_refused(tmp_path, edit, needle):
    """A hand-edited model.json that would load a model other than it describes (or one
    predicting NaN, or clipping to a reversed scale) is refused by name."""
    model = AutoEncoder(**dict(BASE, activation="tanh")).fit(X, scale=(0.5, 5))
    path = tmp_path / "m"
    model.save(path)
    meta = json.loads((path / "model.json").read_text())
    edit(meta)
    (path / "model.json").write_text(json.dumps(meta))
    msg = load_error(path)
    assert "model.json" in msg and needle in msg, msg


def test_library_misuse_is_named(tmp_path):
    """Raw TypeError / [Errno 2] before."""
    from npcf.errors import NpcfError, ParamError
    with pytest.raises(ParamError, match="callbacks"):
        AutoEncoder(layers=(4,), n_epochs=1).fit(X, callbacks=5)
    with pytest.raises(NpcfError, match="no interrupted run there"):
        AutoEncoder(layers=(4,), n_epochs=1).fit(X, callbacks=[Checkpoint(tmp_path, resume=True)])
    assert len(Vocabulary([])) == 0
    with pytest.raises(ValueError, match="None or NaN"):
        Vocabulary([None, 1])


@pytest.mark.parametrize("which", ["json", "npz"])
def test_an_unreadable_checkpoint_is_named_as_unreadable_not_corrupt(tmp_path, monkeypatch,
                                                                    which):
    from npcf.autoencoder import checkpoint

    from helpers import tiny_ratings
    AutoEncoder(layers=(4,), n_epochs=1).fit(tiny_ratings()).save(tmp_path / "m")

    def denied(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))
    if which == "npz":              # (root reads any file: the denial is simulated)
        real_open = open
        monkeypatch.setattr(checkpoint, "open", lambda path, *a, **k: denied(path)
                            if str(path).endswith(".npz") else real_open(path, *a, **k),
                            raising=False)
    else:
        monkeypatch.setattr(checkpoint.Path, "read_bytes", lambda self, *a, **k: denied(self))
    with pytest.raises(PermissionError) as err:
        AutoEncoder.load(tmp_path / "m")
    assert err.value.filename.endswith(f".{which}")
