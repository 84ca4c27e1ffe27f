"""The declared onnxruntime / onnx floors, tested: every export variant run in a venv with
the oldest supported versions against the current environment.

    python benchmarks/compat.py [--ort 1.15.0] [--onnx 1.14.0] [--venv DIR] [--json FILE]

The floors are ``setup.cfg``'s (``onnxruntime>=``, ``onnx>=``) unless given. A venv is
made under a temporary directory (or ``--venv DIR``, reused when it already has them)
with ``onnxruntime==FLOOR onnx==FLOOR numpy<2 scipy``. The current environment trains
small models (tied, untied, a seed ensemble; MSE and multinomial), saves their checkpoints
and exports every variant (dense/sparse, raw ids when the exporter has them,
fp32/fp16/int8, top-k or not, popularity penalty) and the inputs of 64 users to
``.npz``. A child in the venv (this file, ``--child``) checks each file with the floor
onnx's full checker, runs it with the floor onnxruntime, and also re-exports each variant
from its checkpoint with the floor onnx (``PYTHONPATH`` = this repository) and runs that
too. Compared per variant: max |scores_floor - scores_current|, top-k equal, no rated
movie in the floor's top-k, and the floor-onnx export's max |scores| difference.
"""
from __future__ import annotations

import argparse
import configparser
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: users whose outputs are compared
N_USERS = 64


def floors() -> dict:
    """``{"onnxruntime": "1.15.0", "onnx": ...}`` from setup.cfg's install_requires."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    out = {}
    for line in cfg["options"]["install_requires"].split("\n"):
        m = re.fullmatch(r"\s*(onnxruntime|onnx)\s*>=\s*([0-9.]+)\s*", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def variants(export) -> list[dict]:
    """Every export variant compared: keyword arguments of ``export`` plus the model."""
    raw = "raw_ids" in inspect.signature(export).parameters
    out = []
    for model in ("tied", "untied", "ensemble", "multinomial"):
        for sig in ("dense", "sparse") + (("raw_ids",) if raw else ()):
            for precision in ("fp32", "fp16", "int8"):
                for top_k, pen in ((0, 0.0), (10, 0.0), (10, 0.3)):
                    if sig == "raw_ids" and not top_k:
                        continue                       # a raw-id graph always has top-k
                    if model != "tied" and (precision, top_k, pen) not in (
                            ("fp32", 10, 0.0), ("int8", 10, 0.0)):
                        continue                       # the other models: fewer variants
                    kw = dict(sparse_input=sig == "sparse", top_k=top_k or None,
                              popularity_penalty=pen, precision=precision)
                    if sig == "raw_ids":
                        kw["raw_ids"] = True
                    out.append(dict(name=f"{model}-{sig}-{precision}-top{top_k}-pen{pen}",
                                    model=model, signature=sig, kwargs=kw))
    return out


def _models(tmp: Path) -> dict:
    """Small fitted models saved as checkpoints: ``{name: (model, npz path)}``."""
    import numpy as np
    import scipy.sparse as sp

    import npcf
    from npcf.data.vocab import Vocabulary
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 400
    x = sp.random(n_users, n_items, density=0.08, random_state=rng, format="csr",
                  dtype=np.float32)
    x.data = (rng.integers(1, 11, x.nnz) / 2).astype(np.float32)
    items = Vocabulary(np.arange(1, n_items + 1) * 7)
    specs = {"tied": dict(tied=True), "untied": dict(tied=False),
             "ensemble": dict(tied=True, ensemble=2),
             "multinomial": dict(loss="multinomial", residual=False)}
    out = {}
    for name, kw in specs.items():
        m = npcf.AutoEncoder(layers=(64, 16), n_epochs=2, batch_size=32, seed=0, **kw)
        m.fit(x, scale=(0.5, 5.0), items=items)
        path = tmp / f"{name}.npz"
        m.save(path)
        out[name] = (m, path)
    return out, x


def _feeds(x, items_ids):
    import numpy as np
    lengths = np.diff(x.indptr)
    width = max(1, int(lengths.max()))
    idx = np.zeros((x.shape[0], width), np.int64)
    val = np.zeros((x.shape[0], width), np.float32)
    for r in range(x.shape[0]):
        a, b = x.indptr[r], x.indptr[r + 1]
        idx[r, :b - a], val[r, :b - a] = x.indices[a:b], x.data[a:b]
    return {"dense": {"ratings": x.toarray().astype(np.float32)},
            "sparse": {"item_idx": idx, "item_rating": val},
            "raw_ids": {"movie_id": np.asarray(items_ids, np.int64)[idx], "rating": val}}


def _run_all(manifest: dict, out_dir: Path, which: str, prefix: str) -> None:
    """Run every ``which`` file of ``manifest`` with this interpreter's onnxruntime;
    outputs to ``out_dir/<prefix>_<name>.npz``."""
    import numpy as np
    import onnxruntime as ort
    for v in manifest["variants"]:
        path = v["files"][which]
        feeds = dict(np.load(manifest["inputs"][v["signature"]]))
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        res = sess.run(names, feeds)
        np.savez(out_dir / f"{prefix}_{v['name']}.npz", **dict(zip(names, res)))


def child(args) -> None:
    """In the floor venv: check, re-export with the floor onnx, run both."""
    import onnx
    import onnxruntime as ort
    manifest = json.loads(Path(args.child).read_text())
    out_dir = Path(manifest["dir"])
    checked = {}
    for v in manifest["variants"]:
        try:
            onnx.checker.check_model(onnx.load(v["files"]["current"]), full_check=True)
            checked[v["name"]] = "ok"
        except Exception as err:  # the checker's own error types differ between versions
            checked[v["name"]] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
    sys.path.insert(0, str(ROOT))
    from npcf import AutoEncoder
    from npcf.serving.export import export
    models = {k: AutoEncoder.load(p) for k, p in manifest["checkpoints"].items()}
    exported = {}
    for v in manifest["variants"]:
        try:
            export(models[v["model"]], v["files"]["floor_onnx"], **v["kwargs"])
            exported[v["name"]] = "ok"
        except Exception as err:
            exported[v["name"]] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
    errors = {}
    for which in ("current", "floor_onnx"):
        for v in manifest["variants"]:
            if which == "floor_onnx" and exported[v["name"]] != "ok":
                continue
            try:
                _run_all({**manifest, "variants": [v]}, out_dir, which, f"floor_ort_{which}")
            except Exception as err:  # onnxruntime raises its own exception types
                errors[f"{which}:{v['name']}"] = str(err).splitlines()[0][:200]
    print(json.dumps({"onnxruntime": ort.__version__, "onnx": onnx.__version__,
                      "checked": checked, "exported": exported, "errors": errors}))


def make_venv(venv: Path, ort_version: str, onnx_version: str) -> Path:
    """``venv``'s python with the floor versions installed (created when missing)."""
    py = venv / "bin" / "python"
    want = f"{ort_version} {onnx_version}"
    have = ""
    if py.exists():
        have = subprocess.run([str(py), "-c", "import onnxruntime, onnx; print("
                               "onnxruntime.__version__, onnx.__version__)"],
                              capture_output=True, text=True).stdout.strip()
    if have != want:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"onnxruntime=={ort_version}",
                        f"onnx=={onnx_version}", "numpy<2", "scipy<1.16"], check=True)
    return py


def compare(py: Path, tmp: Path) -> dict:
    """Export in this environment, run in ``py``'s (the floor's), compare."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from npcf.serving.export import export
    models, x = _models(tmp)
    users = x[:N_USERS]
    any_model = models["tied"][0]
    feeds = _feeds(users, any_model.items.ids)
    inputs = {}
    for sig, f in feeds.items():
        inputs[sig] = str(tmp / f"inputs_{sig}.npz")
        np.savez(inputs[sig], **f)
    vs = variants(export)
    for v in vs:
        v["files"] = {k: str(tmp / f"{k}_{v['name']}.onnx") for k in ("current", "floor_onnx")}
        export(models[v["model"]][0], v["files"]["current"], **v["kwargs"])
    manifest = {"dir": str(tmp), "inputs": inputs, "variants": vs,
                "checkpoints": {k: str(p) for k, (_, p) in models.items()}}
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    _run_all(manifest, tmp, "current", "current_ort_current")
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    res = subprocess.run([str(py), str(Path(__file__).resolve()), "--child",
                          str(tmp / "manifest.json")], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-3000:])
    floor = json.loads(res.stdout.strip().splitlines()[-1])
    rows = []
    rated = (users.toarray() != 0)
    for v in vs:
        ref = dict(np.load(tmp / f"current_ort_current_{v['name']}.npz"))
        row = {"variant": v["name"], "checker": floor["checked"][v["name"]],
               "floor_onnx_export": floor["exported"][v["name"]]}
        err = floor["errors"].get(f"current:{v['name']}")
        if err:
            row["runs"] = err
        else:
            got = dict(np.load(tmp / f"floor_ort_current_{v['name']}.npz"))
            row["runs"] = "ok"
            row["max_abs_scores"] = float(np.max(np.abs(got["scores"] - ref["scores"])))
            if "top_items" in ref:
                row["top_k_equal"] = bool(np.array_equal(got["top_items"], ref["top_items"]))
                row["rated_in_top_k"] = int(np.take_along_axis(rated, got["top_items"], 1).sum())
            if "top_movie_ids" in ref:
                row["top_movie_ids_equal"] = bool(np.array_equal(got["top_movie_ids"],
                                                                 ref["top_movie_ids"]))
        f = tmp / f"floor_ort_floor_onnx_{v['name']}.npz"
        if f.exists():
            got = dict(np.load(f))
            row["floor_onnx_max_abs_scores"] = float(np.max(np.abs(got["scores"] - ref["scores"])))
        rows.append(row)
    ok = all(r["runs"] == "ok" and r["checker"] == "ok" and r["floor_onnx_export"] == "ok"
             and r.get("top_k_equal", True) and not r.get("rated_in_top_k", 0)
             and r.get("top_movie_ids_equal", True) for r in rows)
    return {"floor": {"onnxruntime": floor["onnxruntime"], "onnx": floor["onnx"]},
            "current": {"onnxruntime": ort.__version__, "onnx": onnx.__version__,
                        "numpy": np.__version__},
            "python": sys.version.split()[0], "n_users": N_USERS, "all_ok": ok,
            "child_s": time.perf_counter() - t0, "rows": rows}


def markdown(r: dict) -> str:
    import report
    fl, cu, m = r["floor"], r["current"], report.machine()
    table = []
    for row in r["rows"]:
        table.append((row["variant"], row["checker"], row["runs"],
                      f"{row['max_abs_scores']:.1e}" if "max_abs_scores" in row else "",
                      {True: "yes", False: "**no**"}.get(row.get("top_k_equal"), "-"),
                      row.get("rated_in_top_k", "-"),
                      row["floor_onnx_export"] if row["floor_onnx_export"] != "ok" else
                      f"{row['floor_onnx_max_abs_scores']:.1e}"))
    head = (f"floor: onnxruntime {fl['onnxruntime']}, onnx {fl['onnx']} (venv, numpy<2); "
            f"current: onnxruntime {cu['onnxruntime']}, onnx {cu['onnx']}, numpy {cu['numpy']}; "
            f"Python {r['python']}; {m['cpu']}, {m['cores']} cores; {report.now()}; "
            f"{r['n_users']} users per variant. "
            + ("Every variant loads, runs and ranks alike on the floor."
               if r["all_ok"] else "**Some variants fail on the floor (see the table).**"))
    return "\n".join([head, "", report.md_table(
        ("variant (model-signature-precision-top k-penalty)", "floor onnx checker",
         f"runs on onnxruntime {fl['onnxruntime']}",
         f"max abs scores diff vs {cu['onnxruntime']}", "top-k equal", "rated in top-k",
         f"exported with onnx {fl['onnx']}: max abs diff"),
        table, "lllrlrr"), "",
        "`python benchmarks/compat.py` (or `python benchmarks/run.py --only compat`): files "
        "exported in the current environment, run in a venv holding the floor versions; the "
        "last column re-exports each variant from the same checkpoint with the floor onnx "
        "and runs it on the floor onnxruntime."])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ort", default=None, help="onnxruntime version (default: setup.cfg floor)")
    ap.add_argument("--onnx", default=None, help="onnx version (default: setup.cfg floor)")
    ap.add_argument("--venv", default=None, help="venv directory to create or reuse")
    ap.add_argument("--python", default=None, help="an existing venv python to use as is")
    ap.add_argument("--json", default=None)
    ap.add_argument("--write", action="store_true",
                    help="write the table into benchmarks/RESULTS.md and results.json")
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return {}
    fl = floors()
    with tempfile.TemporaryDirectory(prefix="npcf-compat-") as tmp:
        tmp = Path(tmp)
        if args.python:
            py = Path(args.python)
        else:
            py = make_venv(Path(args.venv) if args.venv else tmp / "venv",
                           args.ort or fl["onnxruntime"], args.onnx or fl["onnx"])
        work = tmp / "work"
        work.mkdir()
        sys.path.insert(0, str(ROOT))
        r = compare(py, work)
    for row in r["rows"]:
        print(json.dumps(row))
    print(f"floor {r['floor']} vs current {r['current']}: "
          f"{'all ok' if r['all_ok'] else 'FAILURES'}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    if args.write:
        sys.path.insert(0, str(HERE))
        import report
        report.publish("compat", markdown(r), r)
    return r


if __name__ == "__main__":
    main()
