"""The autoencoder estimator, its training loop, checkpoints and ensembles."""
from npcf.autoencoder.estimator import AutoEncoder

__all__ = ["AutoEncoder"]
