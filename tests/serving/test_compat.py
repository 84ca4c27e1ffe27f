"""The onnxruntime / onnx floors: declared once (setup.cfg), quoted alike everywhere, and
(with ``NPCF_COMPAT_VENV=/path/to/venv/bin/python``, a venv holding the floor versions)
every export variant run there against the current environment."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def declared() -> dict:
    text = (ROOT / "setup.cfg").read_text()
    found = re.findall(r"^\s*(onnxruntime|onnx)\s*>=\s*([0-9.]+)\s*$", text, flags=re.MULTILINE)
    assert sorted(k for k, _ in found) == ["onnx", "onnxruntime"], found   # each once
    return dict(found)


@pytest.mark.parametrize("doc", ["README.md", "npcf/serving/export.py"])
def test_every_mention_of_a_floor_agrees_with_setup_cfg(doc):
    floors = declared()
    text = (ROOT / doc).read_text()
    quoted = re.findall(r"\b(onnxruntime|onnx)\s*>=\s*([0-9]+\.[0-9]+(?:\.[0-9]+)?)", text)
    assert {k for k, _ in quoted} == {"onnx", "onnxruntime"}, f"{doc} quotes no floor"
    for name, version in quoted:
        assert version == floors[name], f"{doc}: {name} >= {version}, setup.cfg: {floors[name]}"


@pytest.mark.skipif(not os.environ.get("NPCF_COMPAT_VENV"),
                    reason="set NPCF_COMPAT_VENV to a venv python with the floor versions")
def test_every_variant_runs_alike_on_the_floor(tmp_path):
    py = os.environ["NPCF_COMPAT_VENV"]
    out = tmp_path / "compat.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compat.py"), "--python", py,
                          "--json", str(out)], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    r = json.loads(out.read_text())
    assert all(r["floor"][k] in (v, v + ".0") for k, v in declared().items()), r["floor"]
    bad = [row for row in r["rows"] if row["runs"] != "ok" or row["checker"] != "ok"
           or row["floor_onnx_export"] != "ok" or not row.get("top_k_equal", True)
           or row.get("rated_in_top_k", 0) or row["max_abs_scores"] > 1e-5
           or row["floor_onnx_max_abs_scores"] > 1e-5]
    assert not bad, bad[:3]
    assert r["all_ok"] and len(r["rows"]) >= 30
