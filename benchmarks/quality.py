"""Recommendation quality, seed 0, side by side with the baselines.

1. Rating prediction, random 90/10 split (validation carved from training as
   ``cli.py train`` does): RMSE and MAE of npcf's default user-based model and of
   its item-based mode, global mean, user+item biases, and Surprise's SVD, SVD++ and
   KNNBaseline when ``scikit-surprise`` is installed.
2. Top-N, strong generalization (Liang et al. 2018): ratings >= 4 are positives,
   users with >= 5 positives, 20% of users held out, each with an 80/20
   fold-in/held-out cut: Recall@20, NDCG@10, NDCG@100, coverage@10, Gini@10 of npcf's
   multinomial model beside popularity and EASE, and of the same model ranked with a
   popularity penalty chosen on the validation users; the same on the built-in
   synthetic set (``--data synthetic``).
3. Rating prediction across data sets (movies-small, Flixster, Yahoo! Music):
   :mod:`crossdata`.

    python benchmarks/quality.py [--quick]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from npcf.evaluation.metrics import mae, rmse
from npcf.utils.sparse import entry_rows

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "datasets" / "movies-small" / "ratings.csv"

# item-based settings chosen on validation (benchmarks/NOTES.md)
ITEM_BASED = dict(item_based=True)
ENSEMBLE = 3   # seeds per ensemble row (benchmarks/NOTES.md: K > 3 adds nothing)
# multinomial settings chosen on the validation users (benchmarks/tuning/mult.log); 3 seeds
# merged into one network: +0.0036 NDCG@100 (se 0.0017) in a 5-fold cross-validation over
# the non-test users, every fold a gain (benchmarks/NOTES.md, 2026-12-05)
MULT = dict(loss="multinomial", layers=(1000,), activation="tanh", noise_level=0.5,
            batch_size=32, lr=1e-3, weight_decay=1e-3, n_epochs=100, patience=10, ensemble=3)
# popularity penalty grid and rule (benchmarks/tuning/penalty.log): the largest value
# that keeps the validation users' NDCG@100 within 2% of the unpenalized model's
PENALTIES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0)
PENALTY_TOLERANCE = 0.02


def rating_prediction(quick: bool = False) -> list[dict]:
    from npcf import AutoEncoder
    from npcf.data import load_dataset
    from npcf.data.dataset import with_validation
    from npcf.evaluation.protocol import rating_metrics
    ds = with_validation(load_dataset(DATA, seed=0), seed=0)
    s = ds.split
    rows = []
    configs = [("npcf user-based (no search)", {}), ("npcf item-based", ITEM_BASED),
               (f"npcf user-based, ensemble={ENSEMBLE}", dict(ensemble=ENSEMBLE)),
               (f"npcf item-based, ensemble={ENSEMBLE}", dict(ITEM_BASED, ensemble=ENSEMBLE))]
    for label, cfg in configs:
        t0 = time.perf_counter()
        cfg = dict(cfg, n_epochs=3) if quick else cfg
        m = AutoEncoder(**cfg).fit(s.train, s.validation, s.validation_input, scale=ds.scale)
        r = rating_metrics(m, s.test_input, s.test)
        rows.append(dict(model=label, rmse=r["rmse"], mae=r["mae"],
                         seconds=time.perf_counter() - t0,
                         best_epoch=m.info.get("best_epoch")))
    rows += baseline_rows(ds)
    rows += surprise_rows(s, ds, quick)
    return rows


def baseline_rows(ds) -> list[dict]:
    """Test RMSE/MAE of the global mean and of the user+item biases (regularisation
    chosen on the validation part) of the split data set ``ds``."""
    from npcf.evaluation.baselines import Biases, GlobalMean
    s = ds.split
    rows = []
    for label, model in (("global mean", GlobalMean()), ("user+item biases", Biases(scale=ds.scale))):
        t0 = time.perf_counter()
        model.fit(s.train, s.validation, s.validation_input)
        t = s.test
        users = entry_rows(t)
        scores = np.empty(t.nnz, np.float32)
        for a in range(0, t.shape[0], 256):
            sl = slice(t.indptr[a], t.indptr[min(a + 256, t.shape[0])])
            block = model.predict(s.test_input[a:a + 256])
            scores[sl] = block[users[sl] - a, t.indices[sl]]
        rows.append(dict(model=label, rmse=rmse(scores, t.data), mae=mae(scores, t.data),
                         seconds=time.perf_counter() - t0))
    return rows


def precision_variants(quick: bool = False) -> list[dict]:
    """File size, batch-1 latency and test RMSE of the exported default model per precision
    (the RMSE change is against the NumPy forward of the same model)."""
    import tempfile

    from npcf import AutoEncoder
    from npcf.data import load_dataset
    from npcf.data.dataset import with_validation
    from npcf.serving.export import export
    from npcf.serving.runtime import Recommender
    ds = with_validation(load_dataset(DATA, seed=0), seed=0)
    s, t = ds.split, ds.split.test
    model = AutoEncoder(**({"n_epochs": 3} if quick else {})).fit(
        s.train, s.validation, s.validation_input, scale=ds.scale, items=ds.items)
    users = entry_rows(t)
    ref = rmse(model.predict(s.test_input)[users, t.indices], t.data)
    rows = [dict(variant="NumPy forward", precision="fp32", rmse=ref, delta=0.0)]
    one = s.test_input[int(np.argmax(np.diff(s.test_input.indptr) > 50))]
    with tempfile.TemporaryDirectory() as tmp:
        for sparse in (False, True):
            for prec in ("fp32", "fp16", "int8"):
                path = export(model, Path(tmp) / "m.onnx", precision=prec, sparse_input=sparse)
                rec = Recommender.load(path)
                pred = rec.scores(s.test_input)[users, t.indices]
                feeds = rec._feeds(one)
                sess = rec.session
                reps = []
                for _ in range(30):
                    t0 = time.perf_counter()
                    sess.run(["scores"], feeds)
                    reps.append(time.perf_counter() - t0)
                err = rmse(pred, t.data)
                rows.append(dict(variant=f"onnxruntime {'sparse' if sparse else 'dense'}",
                                 precision=prec, rmse=err, delta=err - ref,
                                 file_mb=path.stat().st_size / 1e6,
                                 batch1_ms=1e3 * float(np.median(reps))))
    return rows


def surprise_rows(s, ds, quick) -> list[dict]:
    try:
        import surprise
    except ImportError:
        return [dict(model=f"Surprise {n}", skipped="scikit-surprise not installed")
                for n in ("SVD", "SVD++", "KNNBaseline")]
    import pandas as pd
    train = s.train + s.validation
    coo = train.tocoo()
    reader = surprise.Reader(rating_scale=tuple(ds.scale))
    data = surprise.Dataset.load_from_df(pd.DataFrame({"u": coo.row, "i": coo.col, "r": coo.data}),
                                         reader)
    trainset = data.build_full_trainset()
    t = s.test.tocoo()
    rows = []
    for name, algo in (("SVD", surprise.SVD(random_state=0)), ("SVD++", surprise.SVDpp(random_state=0)),
                       # item-item with shrunk Pearson-baseline similarity: Surprise's
                       # recommended and strongest KNNBaseline setting (user-MSD: 0.900 here)
                       ("KNNBaseline", surprise.KNNBaseline(
                           sim_options={"name": "pearson_baseline", "user_based": False},
                           verbose=False))):
        if quick and name != "SVD":
            continue
        t0 = time.perf_counter()
        algo.fit(trainset)
        pred = np.array([algo.predict(u, i).est for u, i in zip(t.row, t.col)])
        rows.append(dict(model=f"Surprise {name}", rmse=rmse(pred, t.data), mae=mae(pred, t.data),
                         seconds=time.perf_counter() - t0))
    return rows


def strong_generalization_split(data=DATA):
    """The top-N protocol's split of ``data`` (a ratings file, or ``"synthetic"``: what
    ``--data synthetic`` reads): positives (rating >= 4) of users with >= 5 of them,
    20% held-out users with an 80/20 fold-in/held-out cut, 10% validation users; seed 0."""
    from npcf.data import load_ratings
    from npcf.data.dataset import Dataset, with_validation
    from npcf.data.splits import split_ratings
    from npcf.utils.sparse import select
    r, _ = load_ratings(data)
    m = r.matrix
    pos = select(m, m.data >= 4.0)
    keep_users = np.diff(pos.indptr) >= 5
    pos = select(pos, keep_users[entry_rows(pos)])
    pos.data[:] = 1.0
    split = split_ratings(pos, "users", test_size=0.2, seed=0, holdout=0.2)
    return with_validation(Dataset(split, r.users, r.items, {"scale": None}), seed=0).split


def strong_generalization(quick: bool = False, data=DATA) -> list[dict]:
    """Popularity, EASE and npcf's multinomial model (:data:`MULT`, with and without the
    popularity penalty) on :func:`strong_generalization_split` of ``data``."""
    from npcf import AutoEncoder
    from npcf.evaluation.baselines import EASE, Popularity
    s = strong_generalization_split(data)
    counts = np.bincount(s.train.indices, minlength=s.train.shape[1])
    rows = []
    models = [("popularity", Popularity()), ("EASE", EASE()),
              ("npcf multinomial, 3 seeds", AutoEncoder(**(dict(MULT, n_epochs=3) if quick else MULT)))]
    for label, model in models:
        t0 = time.perf_counter()
        model.fit(s.train, s.validation, s.validation_input)
        rows.append(_topn_row(label, model.predict, s, counts, time.perf_counter() - t0))
    beta = choose_penalty(model.predict, s, counts)
    rows.append(_topn_row(f"npcf multinomial, 3 seeds, popularity penalty {beta:g}", model.predict, s,
                          counts, rows[-1]["seconds"], beta))
    return rows


def _topn_row(label, score_fn, s, counts, seconds, beta: float = 0.0) -> dict:
    res = evaluate_topn(score_fn, s.test_input, s.test, counts, beta)
    return {"model": label, "recall@20": res["recall@20"], "ndcg@10": res["ndcg@10"],
            "ndcg@100": res["ndcg@100"], "coverage@10": res["coverage@10"],
            "gini@10": res["gini@10"], "seconds": seconds, "n_users": res["n_users"]}


def evaluate_topn(score_fn, inputs, heldout, counts, beta: float = 0.0) -> dict:
    """Top-N metrics, ranking by score - ``beta`` * log(1 + training count) (what
    ``cli.py eval --generate --popularity_penalty beta`` puts in the ONNX graph)."""
    from npcf.evaluation.protocol import evaluate
    return evaluate(score_fn, inputs, heldout, ks=(10, 20, 100), item_counts=counts,
                    threshold=None, popularity_penalty=beta)


def choose_penalty(score_fn, s, counts) -> float:
    """The largest :data:`PENALTIES` value that costs at most :data:`PENALTY_TOLERANCE`
    of the validation users' NDCG@100 (validation only; never the test users)."""
    ndcg = {b: evaluate_topn(score_fn, s.validation_input, s.validation, counts, b)["ndcg@100"]
            for b in PENALTIES}
    return max(b for b in PENALTIES if ndcg[b] >= (1 - PENALTY_TOLERANCE) * ndcg[0.0])


def topn_table(topn: list[dict]) -> str:
    """The markdown table of :func:`strong_generalization` rows."""
    from report import md_table
    return md_table(("model", "Recall@20", "NDCG@10", "NDCG@100", "coverage@10", "Gini@10",
                     "seconds"),
                    [(x["model"], f"{x['recall@20']:.4f}", f"{x['ndcg@10']:.4f}",
                      f"{x['ndcg@100']:.4f}", f"{x['coverage@10']:.4f}", f"{x['gini@10']:.4f}",
                      f"{x['seconds']:.1f}") for x in topn], "lrrrrrr")


def synthetic_markdown(topn: list[dict]) -> str:
    """The top-N table on the built-in synthetic set (what ``--data synthetic`` reads)."""
    return "\n".join([
        f"Top-N, strong generalization on the built-in synthetic set (`--data synthetic`: "
        f"`npcf.data.synthetic.generate()`, 2,000 users x 1,500 movies, seed 0; "
        f"{topn[0]['n_users'] if topn else 0} held-out users; same protocol and the same "
        "settings as above, chosen on movies-small):", "",
        topn_table(topn)])


def markdown(rating: list[dict], topn: list[dict], variants: list[dict] | None = None) -> str:
    from report import md_table
    r_rows = [(x["model"], f"{x['rmse']:.4f}", f"{x['mae']:.4f}", f"{x['seconds']:.1f}")
              if "skipped" not in x else (x["model"], "skipped", x["skipped"], "")
              for x in rating]
    return "\n".join([
        "Rating prediction, movies-small, random 90/10 split, seed 0 (test set; validation "
        "carved from training for early stopping; the npcf rows fit `AutoEncoder()` with its "
        "defaults, or as named, without the model selection `train` runs by default (that "
        "one is in the cross-data-set table); `ensemble=K`: K seeds, each early-stopped, "
        "served as one network that predicts their mean):", "",
        md_table(("model", "RMSE", "MAE", "seconds"), r_rows, "lrrr"), "",
        f"Top-N, strong generalization ({topn[0]['n_users'] if topn else 0} held-out users; "
        "rating >= 4 is a positive, users with >= 5 positives, 20% test users, 80/20 "
        "fold-in/held-out, seed 0):", "",
        topn_table(topn), "",
        "The penalty row ranks the same model's scores minus beta * log(1 + training count) "
        "(what `cli.py eval --generate --popularity_penalty beta` exports); beta is the "
        f"largest of {', '.join(f'{b:g}' for b in PENALTIES)} that keeps the validation "
        f"users' NDCG@100 within {PENALTY_TOLERANCE:.0%} of the unpenalized model's.",
    ] + ([] if not variants else [
        "", "Precision variants of the exported default model (movies-small test RMSE; "
        "batch-1 scores latency, 1 user with > 50 ratings):", "",
        md_table(("engine", "precision", "test RMSE", "change", "file MB", "batch-1 ms"),
                 [(v["variant"], v["precision"], f"{v['rmse']:.5f}", f"{v['delta']:+.5f}",
                   f"{v['file_mb']:.2f}" if "file_mb" in v else "",
                   f"{v['batch1_ms']:.2f}" if "batch1_ms" in v else "") for v in variants],
                 "llrrrr")]))


def full_markdown(res: dict) -> str:
    """The whole quality section: movies-small, the synthetic top-N and the cross-data-set
    rating table (:mod:`crossdata`), from :func:`main`'s result."""
    import crossdata
    parts = [markdown(res["rating"], res["topn"], res.get("variants"))]
    if res.get("topn_synthetic"):
        parts.append(synthetic_markdown(res["topn_synthetic"]))
    if res.get("datasets"):
        parts.append("### Across data sets\n\n" + crossdata.markdown(res["datasets"]))
    return "\n\n".join(parts)


def main(argv=None):
    import crossdata
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 epochs per model")
    args = ap.parse_args(argv)
    rating, topn = rating_prediction(args.quick), strong_generalization(args.quick)
    res = {"rating": rating, "topn": topn,
           "topn_synthetic": strong_generalization(args.quick, "synthetic"),
           "variants": precision_variants(args.quick), "datasets": crossdata.run(args.quick)}
    print(full_markdown(res))
    return res


if __name__ == "__main__":
    main()
