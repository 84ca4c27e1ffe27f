"""The scikit-learn hyperparameter protocol shared by every npcf estimator."""
from __future__ import annotations

import numpy as np
import pytest

from npcf.utils.params import Params


class Toy(Params):
    def __init__(self, size=3, layers=(4,), name="a"):
        self.size, self.layers, self.name = size, layers, name
        self._check_params()

    def _check_params(self):
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size: must be >= 1, got {self.size!r}")


def test_get_params_as_given_and_changed_params_by_value():
    t = Toy(layers=np.array([4]), name="b")
    assert set(t.get_params()) == {"size", "layers", "name"}
    assert t.get_params()["layers"] is t.layers                    # as given, not copied
    assert set(t.changed_params()) == {"name"}                       # array (4,) == default
    assert repr(t) == "Toy(name='b')"
    assert repr(Toy(layers=[8, 4])) == "Toy(layers=[8, 4])"


def test_set_params_is_all_or_nothing():
    t = Toy()
    assert t.set_params(size=5, name="c") is t and (t.size, t.name) == (5, "c")
    with pytest.raises(ValueError, match="invalid parameter 'colour' for Toy"):
        t.set_params(colour=1)
    with pytest.raises(ValueError, match="size"):
        t.set_params(name="d", size=0)
    assert (t.size, t.name) == (5, "c")                               # nothing kept


def test_scikit_learn_tags_and_clone():
    base = pytest.importorskip("sklearn.base")
    c = base.clone(Toy(size=7))
    assert isinstance(c, Toy) and c.size == 7
    get_tags = getattr(pytest.importorskip("sklearn.utils"), "get_tags", None)
    if get_tags is not None:
        assert get_tags(Toy()).input_tags.sparse
