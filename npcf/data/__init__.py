"""Rating data: readers, id maps, splits, prepared directories, synthetic and named sets.

Names load on first use (``npcf.data.vocab`` and ``npcf.data.titles`` stay free of
pandas, so the ONNX runtime can use them).
"""
import importlib

_WHERE = {
    "Dataset": "dataset", "is_prepared": "dataset", "load_prepared": "dataset",
    "save_prepared": "dataset", "with_validation": "dataset",
    "Ratings": "ratings", "build_ratings": "ratings",
    "FORMATS": "readers", "read_movies": "readers", "read_ratings": "readers",
    "SYNTHETIC": "source", "load_dataset": "source", "load_ratings": "source",
    "KINDS": "splits", "Split": "splits", "split_ratings": "splits",
    "generate": "synthetic", "read_titles": "titles", "Vocabulary": "vocab",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"npcf.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'npcf.data' has no attribute {name!r}")
