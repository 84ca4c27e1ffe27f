"""Bias-baseline validation RMSE on the tuning protocol's split (for reference)."""
import numpy as np

from npcf.nn.bias import UserItemBias
from npcf.data import load_dataset
from npcf.data.dataset import with_validation

ds = with_validation(load_dataset("/work/shared/datasets/movies-small/ratings.csv", seed=0), seed=0)
s = ds.split
v = s.validation.tocoo()
for reg in (0, 1, 2, 3, 5, 8, 10, 15, 25):
    b = UserItemBias(reg, reg).fit(s.train)
    p = np.clip(b.predict(s.validation_input, v.row, v.col), *ds.scale)
    print(f"bias baseline reg {reg:>3}: val RMSE {np.sqrt(np.mean((p - v.data) ** 2)):.4f}")
