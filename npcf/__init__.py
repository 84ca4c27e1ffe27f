"""npcf: deep-autoencoder collaborative filtering in NumPy/SciPy, served with onnxruntime."""
__version__ = "0.1.0"

from .errors import CheckpointError, DataError, DatasetError, NpcfError  # noqa: E402
from .vocab import Vocabulary  # noqa: E402

__all__ = ["CheckpointError", "DataError", "DatasetError", "NpcfError", "Vocabulary",
           "__version__"]

from .autoencoder import AutoEncoder  # noqa: E402


def load(path) -> AutoEncoder:
    """Load a model saved with :meth:`AutoEncoder.save` (a directory or its ``model.npz``)."""
    return AutoEncoder.load(path)


__all__ += ["AutoEncoder", "load"]
