"""The ``npcf`` command line (click), a thin layer over the library API."""
from . import data, evaluate, plot, train  # noqa: F401  (register commands)
from .base import main

__all__ = ["main"]
