"""npcf: deep-autoencoder collaborative filtering in NumPy/SciPy, served with onnxruntime."""
__version__ = "0.1.0"

from .errors import CheckpointError, DataError, DatasetError, NpcfError  # noqa: E402
from .vocab import Vocabulary  # noqa: E402

__all__ = ["CheckpointError", "DataError", "DatasetError", "NpcfError", "Vocabulary",
           "__version__"]
