"""The streaming evaluate() against a slow per-user reference loop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from npcf.cli.output import progress_bar
from npcf.evaluation import metrics
from npcf.evaluation.protocol import evaluate, metric_keys, ranking_metrics, rating_metrics


def _data(seed=0, n_users=60, n_items=40):
    rng = np.random.default_rng(seed)
    full = np.where(rng.random((n_users, n_items)) < 0.3,
                    rng.integers(1, 11, (n_users, n_items)) / 2.0, 0.0)
    held = (rng.random((n_users, n_items)) < 0.25) & (full > 0)
    held[:5] = False                                     # users with nothing held out
    test = sp.csr_matrix(np.where(held, full, 0.0).astype(np.float32))
    test_input = sp.csr_matrix(np.where(held, 0.0, full).astype(np.float32))
    W = rng.normal(size=(n_items, n_items)).astype(np.float32)
    bias = rng.normal(size=n_items).astype(np.float32)
    counts = np.bincount(test_input.indices, minlength=n_items)
    return test_input, test, W, bias, counts


class Linear:
    """score_fn: x W + b, clipped to 0.5..5 so it doubles as a rating predictor."""

    def __init__(self, W, bias):
        self.W, self.bias, self.calls = W, bias, []

    def __call__(self, x):
        self.calls.append(x.shape[0])
        return np.clip(x @ self.W + self.bias, 0.5, 5.0).astype(np.float32)


def reference(score_fn, test_input, test, ks, threshold, counts):
    """One user at a time, plain Python sets and loops."""
    users = [u for u in range(test.shape[0]) if test[u].nnz]
    n_items = test.shape[1]
    per = {f"{m}@{k}": [] for k in ks for m in metrics.RANKING}
    lists = {k: [] for k in ks}
    errs = []
    for u in users:
        x = test_input[u]
        s = np.asarray(score_fn(x), np.float64)[0]
        t = test[u]
        errs += [s[i] - v for i, v in zip(t.indices, t.data)]
        seen = set(x.indices)
        rel = {i for i, v in zip(t.indices, t.data) if threshold is None or v >= threshold}
        order = sorted((i for i in range(n_items) if i not in seen), key=lambda i: (-s[i], i))
        for k in ks:
            top = order[:k]
            lists[k].append(top)
            if not rel:
                continue
            hits = [i in rel for i in top]
            denom = min(k, len(rel))
            per[f"precision@{k}"].append(sum(hits) / k)
            per[f"recall@{k}"].append(sum(hits) / denom)
            per[f"ndcg@{k}"].append(sum(h / math.log2(r + 2) for r, h in enumerate(hits)) /
                                    sum(1 / math.log2(r + 2) for r in range(denom)))
            ap = n = 0
            for r, h in enumerate(hits):
                if h:
                    n += 1
                    ap += n / (r + 1)
            per[f"map@{k}"].append(ap / denom)
            per[f"hit_rate@{k}"].append(float(any(hits)))
    out = {key: float(np.mean(v)) for key, v in per.items()}
    out["rmse"] = math.sqrt(np.mean(np.square(errs)))
    out["mae"] = float(np.mean(np.abs(errs)))
    pct = {}
    for i in range(n_items):
        below = sum(c < counts[i] for c in counts)
        same = sum(c == counts[i] for c in counts)
        pct[i] = 100 * (below + (same - 1) / 2) / (n_items - 1)
    for k in ks:
        flat = [i for lst in lists[k] for i in lst]
        out[f"coverage@{k}"] = len(set(flat)) / n_items
        c = np.bincount(flat, minlength=n_items).astype(float)
        out[f"gini@{k}"] = np.abs(c[:, None] - c[None, :]).sum() / (2 * n_items ** 2 * c.mean())
        out[f"popularity@{k}"] = float(np.mean([pct[i] for i in flat]))
        L = lists[k]
        out[f"personalization@{k}"] = 1 - np.mean(
            [len(set(a) & set(b)) / k for i, a in enumerate(L) for b in L[i + 1:]])
    out["n_users"] = len(users)
    return out


@pytest.mark.parametrize("threshold,batch_size", [(None, 7), (4.0, 256), (3.0, 1)])
def test_matches_reference(threshold, batch_size):
    test_input, test, W, bias, counts = _data()
    fn = Linear(W, bias)
    ks = (1, 5, 10)
    got = evaluate(fn, test_input, test, ks=ks, item_counts=counts, rating=True,
                   threshold=threshold, batch_size=batch_size)
    ref = reference(fn, test_input, test, ks, threshold, counts)
    for key, v in ref.items():
        assert got[key] == pytest.approx(v, rel=1e-9, abs=1e-12), key
    assert got["n_ratings"] == test.nnz
    assert got["threshold"] == threshold
    assert got["n_relevant"] == metrics.relevant(test, threshold).nnz
    assert set(metric_keys(ks)) <= set(got)


def test_batch_size_does_not_change_results():
    test_input, test, W, bias, counts = _data(1)
    a = evaluate(Linear(W, bias), test_input, test, ks=(3, 10), item_counts=counts,
                 rating=True, batch_size=4)
    fn = Linear(W, bias)
    b = evaluate(fn, test_input, test, ks=(3, 10), item_counts=counts, rating=True,
                 batch_size=1000)
    assert fn.calls == [a["n_users"]]                    # one batch, only users with targets
    for key in metric_keys((3, 10)):
        assert a[key] == pytest.approx(b[key], rel=1e-12), key


def test_no_rating_metrics_for_rankers():
    test_input, test, W, bias, _ = _data()
    r = evaluate(Linear(W, bias), test_input, test, ks=(5,), rating=False)
    assert r["rmse"] is None and r["mae"] is None
    assert math.isnan(r["popularity@5"])                 # no item_counts given


def test_examples():
    test_input, test, W, bias, _ = _data()
    r = evaluate(Linear(W, bias), test_input, test, ks=(5, 20), examples=3, n_example_items=4)
    ex = r["examples"]
    assert len(ex) == 3
    users = np.flatnonzero(np.diff(test.indptr))
    want = users[np.linspace(0, users.size - 1, 3).round().astype(int)]
    assert [e["user"] for e in ex] == want.tolist()          # spread over the users
    for e in ex:
        assert len(e["items"]) == 4 and e["scores"] == sorted(e["scores"], reverse=True)
        assert not set(e["items"]) & set(test_input[e["user"]].indices)   # input excluded
        assert e["n_heldout"] == test[e["user"]].nnz
        assert e["hits"] == [i in set(e["relevant"]) for i in e["items"]]
    assert evaluate(Linear(W, bias), test_input, test, ks=(5,), examples=0)["examples"] == []


def test_by_row_index_score_fn():
    test_input, test, W, bias, counts = _data()
    full = Linear(W, bias)(test_input)

    def by_index(u):
        return full[u]
    by_index.by_row_index = True
    a = evaluate(by_index, test_input, test, ks=(5,), item_counts=counts, rating=True,
                 batch_size=9)
    b = evaluate(Linear(W, bias), test_input, test, ks=(5,), item_counts=counts, rating=True)
    for key in metric_keys((5,)):
        assert a[key] == pytest.approx(b[key], rel=1e-6), key


def test_catalog_smaller_than_k():
    test_input, test, W, bias, counts = _data(n_items=8)
    r = evaluate(Linear(W, bias), test_input, test, ks=(5, 50), item_counts=counts)
    assert r["coverage@50"] <= 1.0
    assert r["recall@50"] == pytest.approx(1.0)          # everything unseen is ranked


def test_errors():
    test_input, test, W, bias, _ = _data()
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda x: np.zeros((x.shape[0], 3)), test_input, test, ks=(5,))
    with pytest.raises(ValueError, match="positive"):
        evaluate(Linear(W, bias), test_input, test, ks=(0,))
    with pytest.raises(ValueError, match="differ"):
        evaluate(Linear(W, bias), test_input[:, :5], test, ks=(5,))


def test_progress_silent_without_tty(capsys):
    test_input, test, W, bias, _ = _data()
    evaluate(Linear(W, bias), test_input, test, ks=(5,), progress=progress_bar)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


class _FakeModel:
    def __init__(self, W, bias):
        self.f = Linear(W, bias)

    def predict(self, x):
        return self.f(x)

    def predict_at(self, x, rows, cols):
        return self.f(x)[rows, cols]


def test_legacy_helpers_agree_with_evaluate():
    test_input, test, W, bias, _ = _data()
    model = _FakeModel(W, bias)
    new = evaluate(model.predict, test_input, test, ks=(20, 100), rating=True)
    old = ranking_metrics(model, test_input, test, ks=(20, 100))
    for key in ("recall@20", "ndcg@20", "recall@100", "ndcg@100"):
        assert old[key] == pytest.approx(new[key], rel=1e-9)
    assert old["n_users"] == new["n_users"] and old["n_ratings"] == new["n_ratings"]
    rm = rating_metrics(model, test_input, test)
    assert rm["rmse"] == pytest.approx(new["rmse"], rel=1e-6)
    assert rm["mae"] == pytest.approx(new["mae"], rel=1e-6)
