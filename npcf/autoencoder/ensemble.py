"""Seed ensembles folded into one network.

K autoencoders of the same shape, averaged at the output pre-activation, are exactly
one wider untied network: hidden layers side by side (first layer concatenated,
middle layers block-diagonal, so the members do not mix when it predicts) and an
output layer that averages them (decoder weights concatenated and divided by K,
output biases averaged). The merged network saves, exports to ONNX and serves like
any other. Cost against one tied member: K times the first- and output-layer compute
and 2K times their weights (the merged network is untied); middle layers are stored
dense, so their weights and compute grow as K squared (nothing for one hidden layer).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from npcf.nn.network import Network


def merge(networks: list[Network]) -> Network:
    """One :class:`Network` whose output pre-activation is the mean of ``networks``'.

    All members must have the same ``n_inputs``, ``layers``, activations and dtype.
    Returns an untied network with layers ``K * h`` each. For an identity output
    activation the output is exactly the members' mean prediction; otherwise it is
    the output activation of their mean logits.
    """
    if not networks:
        raise ValueError("merge needs at least one network")
    first = networks[0]
    for net in networks[1:]:
        same = (net.n_inputs, net.layers, net.activation, net.output_activation, net.dtype)
        if same != (first.n_inputs, first.layers, first.activation, first.output_activation,
                    first.dtype):
            raise ValueError("ensemble members differ in shape, activations or dtype")
    k = len(networks)
    params: dict[str, np.ndarray] = {}
    for j in range(len(first.layers)):
        enc = [n.params[f"W{j}"] for n in networks]
        dec = [n.decoder_weight(j) for n in networks]
        params[f"b{j}"] = np.concatenate([n.params[f"b{j}"] for n in networks])
        if j == 0:    # input and output layers: members share the items' axis
            params["W0"] = np.concatenate(enc, axis=1)
            params["V0"] = np.concatenate(dec, axis=1) / first.dtype.type(k)
            params["c0"] = np.mean([n.params["c0"] for n in networks], axis=0).astype(first.dtype)
        else:         # hidden-to-hidden: each member only sees its own units
            params[f"W{j}"] = scipy.linalg.block_diag(*enc).astype(first.dtype)
            params[f"V{j}"] = scipy.linalg.block_diag(*dec).astype(first.dtype)
            params[f"c{j}"] = np.concatenate([n.params[f"c{j}"] for n in networks])
    return Network(first.n_inputs, tuple(k * h for h in first.layers), tied=False,
                   activation=first.activation, output_activation=first.output_activation,
                   dropout=first.dropout, dtype=first.dtype, params=params)
