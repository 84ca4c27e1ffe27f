"""Shared pieces of the benchmark reports: machine facts, versions, and regenerable
sections of ``benchmarks/RESULTS.md`` (between ``<!-- name:start -->`` markers) and
``benchmarks/results.json`` (one key per section)."""
from __future__ import annotations

import json
import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_JSON = HERE / "results.json"
ORDER = ("machine", "train", "epoch", "infer", "fp16", "data", "quality")
TITLES = {"machine": "Machine", "train": "Training speed",
          "epoch": "Training speed, whole epochs", "infer": "Inference speed",
          "fp16": "Float16 weights", "data": "Data", "quality": "Quality",
          "int8": "int8 schemes", "compat": "ONNX runtime compatibility",
          "serve": "Serving under load", "batch": "Batch recommendations"}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return {"cpu": cpu, "cores": usable, "mem_gib": mem, "os": platform.platform()}


def versions() -> dict:
    import numpy
    import onnxruntime
    import pandas
    import scipy
    sys.path.insert(0, str(ROOT))
    import npcf
    out = {"python": platform.python_version(), "numpy": numpy.__version__,
           "scipy": scipy.__version__, "pandas": pandas.__version__,
           "onnxruntime": onnxruntime.__version__, "npcf": npcf.__version__}
    try:
        import torch
        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = "not installed"
    return out


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def measured_line(when: str, command: str | None = None) -> str:
    """``Measured WHEN on CPU (OS)[; command: `COMMAND`].``"""
    m = machine()
    return f"Measured {when} on {m['cpu']} ({m['os']})" + (
        f"; command: `{command}`." if command else ".")


def update_section(name: str, body: str) -> None:
    """Replace (or add, in :data:`ORDER`) section ``name`` of RESULTS.md."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text,
                      count=1, flags=re.DOTALL)
    else:
        heading = f"## {TITLES.get(name, name.title())}"
        m = re.search(rf"^{re.escape(heading)}[ \t]*\n", text, flags=re.MULTILINE)
        if m:
            text = text[:m.end()] + "\n" + block + "\n" + text[m.end():]
        else:
            text = text.rstrip("\n") + f"\n\n{heading}\n\n{block}\n"
    RESULTS_MD.write_text(text)


def publish(name: str, body: str, obj) -> None:
    """Section ``name`` of RESULTS.md and its key in results.json, from one run."""
    update_section(name, body)
    update_json(name, obj)


def update_json(name: str, obj) -> None:
    data = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    data[name] = obj
    RESULTS_JSON.write_text(json.dumps(data, indent=2, default=str) + "\n")


def md_table(headers, rows, align=None) -> str:
    """A GitHub markdown table; ``align``: string of l/r per column."""
    align = align or "l" * len(headers)
    out = ["| " + " | ".join(headers) + " |",
           "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def run_child(script, args, threads: int, env: dict | None = None):
    """Run ``python script --child ARGS`` with BLAS/OpenMP limited to ``threads`` (plus
    ``env``); return the JSON its last stdout line holds. A failing child raises with
    its stderr."""
    import subprocess
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), **(env or {}))
    res = subprocess.run([sys.executable, str(script), "--child", *map(str, args)], env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])
