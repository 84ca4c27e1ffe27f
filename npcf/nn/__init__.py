"""The network and what trains it: sparse-aware passes, activations, losses, input noise,
hand-written optimizers, learning-rate schedules, the user+item bias residual."""
