"""npcf: deep-autoencoder collaborative filtering in NumPy/SciPy, served with onnxruntime.

The public names load on first use, so ``import npcf.serving.runtime`` stays light
(numpy, scipy, onnxruntime only).
"""
from npcf._version import __version__
from npcf.errors import CheckpointError, DataError, DatasetError, NpcfError

__all__ = ["AutoEncoder", "CheckpointError", "DataError", "DatasetError", "NpcfError",
           "Recommender", "Vocabulary", "__version__", "load"]


def load(path):
    """Load a model saved with :meth:`AutoEncoder.save` (a directory or its ``model.npz``)."""
    from npcf.autoencoder.estimator import AutoEncoder
    return AutoEncoder.load(path)


def __getattr__(name):
    if name == "AutoEncoder":
        from npcf.autoencoder.estimator import AutoEncoder
        return AutoEncoder
    if name == "Vocabulary":
        from npcf.data.vocab import Vocabulary
        return Vocabulary
    if name == "Recommender":
        from npcf.serving.runtime import Recommender
        return Recommender
    raise AttributeError(f"module 'npcf' has no attribute {name!r}")
