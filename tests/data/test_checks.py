"""The checks every model's ``fit`` runs on its inputs (npcf.data.checks)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from npcf.data.checks import check_inputs
from npcf.data.vocab import Vocabulary
from npcf.errors import NpcfError

from helpers import tiny_ratings

X = sp.csr_matrix(np.array([[5, 0, 3], [0, 2, 0]], np.float32))


@pytest.mark.parametrize("kwargs, message", [
    (dict(X=[[1, 2]]), "X: expected a 2-D SciPy sparse matrix, got list"),
    (dict(X=sp.csr_matrix((5, 5), dtype=np.float32)), r"X: the training matrix \(5, 5\) holds no ratings"),
    (dict(X=sp.csr_matrix(np.array([[np.nan, 1.0]]))), "X: holds 1 values that are not finite"),
    (dict(X=sp.csr_matrix(np.array([[1e300, 1.0]]))), "X: holds 1 values .* float32's range"),
    (dict(X=sp.csr_matrix((np.array([0.0, 1.0]), ([0, 0], [0, 1])), shape=(1, 2))),
     "X: 1 stored zeros"),
    (dict(X=sp.coo_matrix((np.array([1.0, 2.0]), ([0, 0], [1, 1])), shape=(2, 3))),
     r"X: 1 stored entry repeats a \(row, column\) pair"),
    (dict(X=X, validation=sp.csr_matrix((3, 3), dtype=np.float32)), "validation: shape"),
    (dict(X=X, validation=X, validation_input=sp.csr_matrix((2, 4), dtype=np.float32)),
     "validation_input"),
    (dict(X=X, items=[1, 2, 3]), "items: expected an npcf.Vocabulary"),
    (dict(X=X, users=Vocabulary([1, 2, 3])), "users: 3 ids for 2 rows"),
])
def test_disagreeing_inputs_are_named(kwargs, message):
    with pytest.raises(NpcfError, match=message):
        check_inputs(**kwargs)


def test_agreeing_inputs_come_back_as_csr_untouched():
    coo = X.tocoo()
    out = check_inputs(coo, X, X, users=Vocabulary([7, 8]), items=Vocabulary(["a", "b", "c"]))
    assert sp.isspmatrix_csr(out) and (out != X).nnz == 0
    assert coo.nnz == 3                                              # the caller's matrix


@pytest.mark.parametrize("fmt", ["dok", "lil", "dia", "csc", "coo", "bsr"])
def test_every_sparse_format_fits_predicts_and_recommends_alike(fmt):
    """DOK and LIL keep no ``.data`` array (DIA's holds padding): every path read it and
    DOK raised AttributeError; all formats now give what CSR gives."""
    import npcf
    from npcf.evaluation.baselines import Biases
    X = tiny_ratings()
    Y = X.asformat(fmt)
    m = npcf.AutoEncoder(layers=(4,), n_epochs=1).fit(Y, Y)
    ref = npcf.AutoEncoder(layers=(4,), n_epochs=1).fit(X, X)
    np.testing.assert_array_equal(m.predict(Y), ref.predict(X))
    rows = sp.csr_matrix(X[:3]).asformat(fmt)
    np.testing.assert_array_equal(m.recommend(rows, k=3).ids, ref.recommend(X[:3], k=3).ids)
    np.testing.assert_array_equal(Biases().fit(X).predict(Y), Biases().fit(X).predict(X))


@pytest.mark.parametrize("fmt", ["dok", "lil"])
def test_a_nan_in_a_format_without_a_data_array_is_refused(fmt):
    X = tiny_ratings().tolil()
    X[0, 0] = np.nan
    import npcf
    with pytest.raises(NpcfError, match="not finite"):
        npcf.AutoEncoder(layers=(4,), n_epochs=1).fit(X.asformat(fmt))
