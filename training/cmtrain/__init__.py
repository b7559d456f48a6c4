"""cmtrain: the Python side of `cm` (model, consistency training, ONNX export)."""
