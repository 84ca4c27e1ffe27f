"""Serving: the ONNX graph built node by node, and the onnxruntime Recommender."""
