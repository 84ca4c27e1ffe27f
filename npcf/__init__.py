"""npcf: deep-autoencoder collaborative filtering in NumPy/SciPy, served with onnxruntime.

Heavy submodules load on first use, so ``import npcf.serving.runtime`` stays light
(numpy, scipy, onnxruntime only).
"""
__version__ = "0.1.0"

from npcf.errors import CheckpointError, DataError, DatasetError, NpcfError  # noqa: E402,I001

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
