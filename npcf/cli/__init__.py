"""The ``npcf`` command line (click), a thin layer over the library API."""
import os

# Before NumPy loads OpenBLAS: its idle workers then sleep at once instead of spinning
# ~0.1 s on the cores npcf's own threads need (train --threads; benchmarks/NOTES.md).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from npcf.cli import data, evaluate, plot, train  # noqa: E402,F401  (register commands)
from npcf.cli.base import main  # noqa: E402

__all__ = ["main"]
