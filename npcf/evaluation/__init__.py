"""Evaluation: the one ranking routine and recommend contract, metrics, the evaluation
protocol over a split, and the baselines npcf is compared with."""
