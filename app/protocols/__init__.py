"""Serving protocols, one package each with its routes and its codec: the native
JSON API (and the tutorial route), TensorFlow Serving REST, Open Inference (v2)."""
