"""Shipping a trained generator: ``ganvas export RUN --format onnx|safetensors``, each export
folder with a model card."""
