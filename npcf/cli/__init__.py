"""The ``npcf`` command line (click): one module per command, each a thin layer that
parses options, calls one :mod:`npcf.workflows` function and prints its result."""
import os

# Before NumPy loads OpenBLAS: its idle workers then sleep at once instead of spinning
# ~0.1 s on the cores npcf's own threads need (train --threads; benchmarks/NOTES.md).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from npcf.cli import batch, datasets, eval, plot, prepare, recommend, serve, train  # noqa: E402,F401
from npcf.cli.main import main  # noqa: E402

__all__ = ["main"]
