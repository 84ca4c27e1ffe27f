"""Exported graphs against the ONNX spec of their declared opset: every node's operator
version, attribute names and enumerated values (``onnx.defs``), and the reference
evaluator (``onnx.reference``) against onnxruntime on padded batches."""
from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

from npcf.serving.export import OPSET, export

from helpers import fitted_model, random_ratings, user_stack

VARIANTS = [dict(sparse_input=s, top_k=k, popularity_penalty=p, tied=t)
            for s in (False, True) for k in (0, 5) for p in (0.0, 0.3) for t in (True, False)
            if not (p and not k)]
# movie ids in and out (ai.onnx.ml LabelEncoder): always sparse, always top-k
VARIANTS += [dict(sparse_input=True, top_k=5, popularity_penalty=p, tied=t, raw_ids=True)
             for p in (0.0, 0.3) for t in (True, False)]
RAW_OUTPUTS = ["top_movie_ids", "n_unknown"]


def enumerated(description: str) -> set[str] | None:
    """The allowed values an attribute's doc lists ("one of: a, b" / "none (default),
    add, mul"), or None when it lists none."""
    m = re.search(r"(?:reduction to apply|One of|one of)[^:]*:\s*([^.]*)", description)
    if not m:
        return None
    return {w for w in re.findall(r"[a-z_]+", m.group(1)) if w not in ("default", "or", "and")}


def export_variant(tmp_path, v, precision="fp32"):
    model = fitted_model(tied=v["tied"])
    path = tmp_path / f"m_{abs(hash(tuple(v.items())))}_{precision}.onnx"
    export(model, path, sparse_input=v["sparse_input"], top_k=v["top_k"] or None,
           popularity_penalty=v["popularity_penalty"], precision=precision,
           raw_ids=v.get("raw_ids", False))
    return model, path


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("v", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_every_node_is_valid_for_the_declared_opset(tmp_path, v, precision):
    _, path = export_variant(tmp_path, v, precision)
    m = onnx.load(path)
    opsets = {o.domain: o.version for o in m.opset_import}
    assert opsets.get("", opsets.get("ai.onnx")) == OPSET
    assert ("ai.onnx.ml" in opsets) == bool(v.get("raw_ids"))
    for node in m.graph.node:
        version = opsets.get(node.domain or "", None)
        assert version is not None, f"{node.op_type}: domain {node.domain!r} not imported"
        schema = onnx.defs.get_schema(node.op_type, version, node.domain or "")
        for attr in node.attribute:
            assert attr.name in schema.attributes, \
                f"{node.op_type}-{schema.since_version}: no attribute {attr.name!r}"
            if attr.type == onnx.AttributeProto.STRING:
                allowed = enumerated(schema.attributes[attr.name].description)
                if allowed is not None:
                    assert attr.s.decode() in allowed, \
                        f"{node.op_type}-{schema.since_version}: {attr.name}={attr.s!r} " \
                        f"not in {sorted(allowed)}"
    onnx.checker.check_model(m, full_check=True)


def ragged_feeds(sparse_input: bool, n_items: int, raw_ids=None):
    """Rows with 0..7 ratings, padded with index 0 / rating 0 (the padding rule);
    ``raw_ids``: the columns' movie ids, fed as ``movie_id``/``rating`` with an unknown
    id (rated) in every other row."""
    x = random_ratings(9, n_items, 0.15, seed=4).tolil()
    x[0, :] = 0
    x = x.tocsr()
    x.eliminate_zeros()
    if not sparse_input:
        return {"ratings": x.toarray().astype(np.float32)}
    width = max(1, int(np.diff(x.indptr).max()))
    idx = np.zeros((x.shape[0], width), np.int64)
    val = np.zeros((x.shape[0], width), np.float32)
    for r in range(x.shape[0]):
        a, b = x.indptr[r], x.indptr[r + 1]
        idx[r, :b - a], val[r, :b - a] = x.indices[a:b], x.data[a:b]
    if raw_ids is not None:
        ids = np.asarray(raw_ids, np.int64)[idx]
        unknown = np.full((x.shape[0], 1), -7, np.int64)
        rating = np.where(np.arange(x.shape[0]) % 2, 4.0, 0.0).astype(np.float32)[:, None]
        return {"movie_id": np.c_[unknown, ids], "rating": np.c_[rating, val]}
    return {"item_idx": idx, "item_rating": val}


@pytest.mark.parametrize("v", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_the_reference_evaluator_agrees_with_onnxruntime(tmp_path, v):
    model, path = export_variant(tmp_path, v)
    raw = v.get("raw_ids", False)
    feeds = ragged_feeds(v["sparse_input"], model.network.n_inputs,
                         model.items.ids if raw else None)
    names = ["scores"] + (["top_items", "top_scores"] if v["top_k"] else []) + \
        (RAW_OUTPUTS if raw else [])
    got = ReferenceEvaluator(str(path)).run(names, feeds)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(names, feeds)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    if v["top_k"]:
        np.testing.assert_array_equal(got[1], want[1])
        if raw:
            np.testing.assert_array_equal(got[3], want[3])
            np.testing.assert_array_equal(got[3], model.items.ids[got[1]])
            np.testing.assert_array_equal(got[4], want[4])
            np.testing.assert_array_equal(got[4], np.arange(len(got[4])) % 2)
            feeds = ragged_feeds(True, model.network.n_inputs)     # the same history by column
        if "ratings" in feeds:
            rated = feeds["ratings"] > 0
        else:                         # padded slots (index 0, rating 0) are not ratings
            rated = np.zeros_like(got[0], bool)
            rows = np.repeat(np.arange(rated.shape[0]), feeds["item_idx"].shape[1])
            hit = feeds["item_rating"].ravel() > 0
            rated[rows[hit], feeds["item_idx"].ravel()[hit]] = True
        assert not np.take_along_axis(rated, got[1], 1).any()


@pytest.mark.parametrize("sparse_input", [False, True])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_user_based_stack_graph_is_valid_and_the_reference_agrees(tmp_path, sparse_input,
                                                                     precision):
    model = user_stack(mass=sparse_input)     # weights that follow the similarity mass too
    path = tmp_path / f"stack_{sparse_input}_{precision}.onnx"
    export(model, path, sparse_input=sparse_input, top_k=5, precision=precision)
    m = onnx.load(path)
    for node in m.graph.node:                   # every node of the declared opset
        onnx.defs.get_schema(node.op_type, OPSET, node.domain or "")
    onnx.checker.check_model(m, full_check=True)
    feeds = ragged_feeds(sparse_input, model.network.n_inputs)
    names = ["scores", "top_items"]
    got = ReferenceEvaluator(str(path)).run(names, feeds)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(names, feeds)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[1], want[1])
