"""What ``npcf train`` does, as a function: split (with validation), fit, score, record."""
from __future__ import annotations

from pathlib import Path

from npcf.autoencoder.estimator import AutoEncoder
from npcf.data import Dataset, save_prepared
from npcf.data.splits import Split, split_ratings
from npcf.evaluation.protocol import ranking_metrics, rating_metrics
from npcf.utils.files import write_json

VALIDATION_FRACTION = 0.1


def with_validation(ds: Dataset, fraction: float = VALIDATION_FRACTION, seed: int = 0) -> Dataset:
    """``ds`` with a validation part carved from its training part if it has none.

    The cut follows the split's kind (held-out users stay held-out users; a
    temporal split without timestamps falls back to a per-user holdout).
    """
    s = ds.split
    if s.validation is not None:
        return ds
    kind = s.params.get("kind", "random")
    kind = {"given": "random", "temporal": "user"}.get(kind, kind)
    inner = split_ratings(s.train, kind, fraction, seed + 1, holdout=s.params.get("holdout", 0.2))
    split = Split(inner.train, s.test, s.test_input, inner.test, inner.test_input,
                  dict(s.params, validation_size=fraction, validation_carved=kind))
    return Dataset(split, ds.users, ds.items, dict(ds.stats, split=split.params), ds.movies,
                   None)


def run_training(ds: Dataset, params: dict, out, *, resume: bool = False, quiet: bool = True,
                 verbose_epochs: int = 0, echo=None) -> dict:
    """Fit an :class:`AutoEncoder` on ``ds`` and write ``out``/{model.*, history.csv,
    metrics.json, data/}. Returns the metrics dict (``test``, ``validation``, paths)."""
    out = Path(out)
    source = ds.path
    ds = with_validation(ds, seed=params.get("seed", 0))
    data_dir = out / "data"
    save_prepared(ds, data_dir)
    s = ds.split
    model = AutoEncoder(**params)
    model.fit(s.train, s.validation, s.validation_input, scale=ds.scale, users=ds.users,
              items=ds.items, out=out, resume=resume, quiet=quiet,
              verbose_epochs=verbose_epochs, echo=echo)
    if model.loss == "mse":
        test = rating_metrics(model, s.test_input, s.test)
    else:
        test = ranking_metrics(model, s.test_input, s.test, ks=(20, 100))
    if "validation" in model.info:          # an ensemble: its own validation figures
        best = model.info["validation"]
    elif model.history and isinstance(model.info.get("best_epoch"), int) \
            and model.info["best_epoch"] > 0:
        best = model.history[model.info["best_epoch"] - 1]
    else:
        best = {}
    result = {"test": test, "validation": best, "model_path": str(out / "model.npz"),
              "data": str(data_dir), "source": str(source or ds.stats.get("source", "")),
              "split": s.params, "hyperparameters": model.get_params()}
    write_json(out / "metrics.json", result)
    return result
