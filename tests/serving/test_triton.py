"""The Triton model repository: config.pbtxt parsed with Triton's own ``ModelConfig``
schema (``tritonclient``) and checked against the graph; layout, names, atomic rewrite."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from npcf.errors import NpcfError
from npcf.serving import triton
from npcf.serving.export import export

from helpers import fitted_model

ORT_TO_TRITON = {"tensor(float)": "TYPE_FP32", "tensor(int64)": "TYPE_INT64"}
VARIANTS = {"dense": dict(top_k=5), "sparse": dict(sparse_input=True, top_k=5),
            "raw_ids": dict(raw_ids=True, top_k=5), "scores_only": dict(top_k=None),
            "raw_ids_fp16": dict(raw_ids=True, top_k=7, precision="fp16")}


@pytest.fixture(scope="module")
def model():
    return fitted_model()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("triton_src")
    return {k: export(model, d / f"{k}.onnx", **kw) for k, kw in VARIANTS.items()}


def parse(path) -> mc.ModelConfig:
    """``config.pbtxt`` as Triton reads it (unknown fields or bad enums raise)."""
    return text_format.Parse(path.read_text(), mc.ModelConfig())


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_config_matches_the_graph(exported, tmp_path, variant):
    src = exported[variant]
    r = triton.write_repository(src, tmp_path / "repo", max_batch_size=64)
    assert r["name"] == variant
    cfg = parse(tmp_path / "repo" / variant / "config.pbtxt")
    assert cfg.name == variant and cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == 64
    assert cfg.HasField("dynamic_batching") and cfg.dynamic_batching.max_queue_delay_microseconds > 0
    assert [g.kind for g in cfg.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    sess = ort.InferenceSession(r["model"], providers=["CPUExecutionProvider"])
    for declared, actual in ((cfg.input, sess.get_inputs()), (cfg.output, sess.get_outputs())):
        assert [t.name for t in declared] == [a.name for a in actual]
        for t, a in zip(declared, actual):
            assert mc.DataType.Name(t.data_type) == ORT_TO_TRITON[a.type], t.name
            assert isinstance(a.shape[0], str), t.name                 # the batch dim
            want = [d if isinstance(d, int) else -1 for d in a.shape[1:]]
            if want:
                assert list(t.dims) == want and not t.HasField("reshape"), t.name
            else:                      # [batch] only: Triton's dims [1] + empty reshape
                assert list(t.dims) == [1] and t.HasField("reshape"), t.name
                assert list(t.reshape.shape) == []


def _run_as_declared(sess, cfg, batch: int, length: int) -> dict:
    """Run the graph on a batch shaped as Triton would send it (declared dims, -1 ->
    ``length``) and return {output name: shape}."""
    feeds = {}
    for t in cfg.input:
        shape = [batch] + [length if d == -1 else d for d in t.dims]
        if t.data_type == mc.TYPE_INT64:
            feeds[t.name] = np.full(shape, 1000, np.int64) if t.name == "movie_id" \
                else np.zeros(shape, np.int64)
        else:
            feeds[t.name] = np.full(shape, 3.5, np.float32)
    outs = sess.run([t.name for t in cfg.output], feeds)
    return {t.name: o.shape for t, o in zip(cfg.output, outs)}


@pytest.mark.parametrize("variant", ["dense", "raw_ids"])
def test_declared_dims_are_what_the_graph_returns(exported, tmp_path, variant):
    r = triton.write_repository(exported[variant], tmp_path / "repo")
    cfg = parse(tmp_path / "repo" / variant / "config.pbtxt")
    sess = ort.InferenceSession(r["model"], providers=["CPUExecutionProvider"])
    for batch, length in ((1, 1), (3, 4)):
        got = _run_as_declared(sess, cfg, batch, length)
        for t in cfg.output:
            dims = list(t.reshape.shape) if t.HasField("reshape") else list(t.dims)
            assert got[t.name] == tuple([batch] + dims), t.name


def test_layout_copy_and_default_names(exported, tmp_path, model):
    repo = tmp_path / "repo"
    r = triton.write_repository(exported["raw_ids"], repo)
    assert (repo / "raw_ids" / "1" / "model.onnx").read_bytes() == exported["raw_ids"].read_bytes()
    assert r["config"] == str(repo / "raw_ids" / "config.pbtxt")
    assert sorted(p.name for p in (repo / "raw_ids").iterdir()) == ["1", "config.pbtxt"]
    fp16 = export(model, tmp_path / "model.fp16.onnx", top_k=3, precision="fp16")
    r = triton.write_repository(fp16, repo)
    assert r["name"] == "model_fp16" == triton.default_name(fp16)
    assert parse(repo / "model_fp16" / "config.pbtxt").name == "model_fp16"
    assert (repo / "raw_ids" / "config.pbtxt").is_file()           # other models stay


@pytest.mark.parametrize("bad", ["", "a/b", "..", ".hidden", "-x", "a b", "x" * 129, "é"])
def test_bad_names_are_refused(exported, tmp_path, bad):
    with pytest.raises(NpcfError, match="triton_name"):
        triton.write_repository(exported["dense"], tmp_path / "repo", name=bad)
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_rewrite_replaces_only_that_model_and_refuses_foreign_dirs(exported, tmp_path):
    repo = tmp_path / "repo"
    triton.write_repository(exported["dense"], repo, name="m", max_batch_size=8)
    triton.write_repository(exported["sparse"], repo, name="other")
    triton.write_repository(exported["raw_ids"], repo, name="m", max_batch_size=16)
    cfg = parse(repo / "m" / "config.pbtxt")
    assert cfg.max_batch_size == 16 and [t.name for t in cfg.input] == ["movie_id", "rating"]
    assert (repo / "m" / "1" / "model.onnx").read_bytes() == exported["raw_ids"].read_bytes()
    assert [t.name for t in parse(repo / "other" / "config.pbtxt").input] == ["item_idx",
                                                                              "item_rating"]
    foreign = repo / "data"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(NpcfError, match="not a Triton model directory"):
        triton.write_repository(exported["dense"], repo, name="data")
    assert (foreign / "keep.txt").read_text() == "mine"
    for added in (repo / "m" / "2" / "model.onnx", repo / "m" / "labels.txt",
                  repo / "m" / "1" / "notes.txt"):           # what a user adds is never lost
        added.parent.mkdir(exist_ok=True)
        added.write_text("mine")
        with pytest.raises(NpcfError, match="holds files npcf did not write"):
            triton.write_repository(exported["dense"], repo, name="m")
        assert added.read_text() == "mine"
        added.unlink()
    (repo / "m" / "2").rmdir()
    triton.write_repository(exported["dense"], repo, name="m")      # its own files: replaced
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(NpcfError, match="is a file"):
        triton.write_repository(exported["dense"], afile)
    with pytest.raises(NpcfError, match="max_batch"):
        triton.write_repository(exported["dense"], repo, name="zero", max_batch_size=0)
    assert not (repo / "zero").exists()


def test_a_failed_write_leaves_the_old_model(exported, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    triton.write_repository(exported["dense"], repo, name="m")
    before = (repo / "m" / "config.pbtxt").read_text()

    def broken(src, dst):
        with open(src, "rb") as a, open(dst, "wb") as b:
            b.write(a.read(1000))
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(triton.shutil, "copyfile", broken)
    with pytest.raises(NpcfError, match="cannot write there"):
        triton.write_repository(exported["raw_ids"], repo, name="m")
    assert (repo / "m" / "config.pbtxt").read_text() == before
    assert (repo / "m" / "1" / "model.onnx").read_bytes() == exported["dense"].read_bytes()
    assert sorted(p.name for p in repo.iterdir()) == ["m"]       # no stage, no lock file left


def test_a_corrupt_model_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(NpcfError, match="bad.onnx") as err:
        triton.write_repository(bad, tmp_path / "repo")
    assert "\n" not in str(err.value)
