"""Rating data: readers, id maps, splits, prepared directories, synthetic and named sets."""
from npcf.data.dataset import Dataset, is_prepared, load_prepared, save_prepared
from npcf.data.ratings import Ratings, build_ratings
from npcf.data.readers import FORMATS, read_movies, read_ratings
from npcf.data.source import SYNTHETIC, load_dataset, load_ratings
from npcf.data.splits import KINDS, Split, split_ratings
from npcf.data.synthetic import generate

__all__ = ["Dataset", "FORMATS", "KINDS", "Ratings", "SYNTHETIC", "Split", "build_ratings",
           "generate", "is_prepared", "load_dataset", "load_prepared", "load_ratings",
           "read_movies", "read_ratings", "save_prepared", "split_ratings"]
