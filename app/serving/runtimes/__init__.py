"""Runtimes: how a loaded model version answers (in-process ONNX or isolated
processes), behind one interface (``base.Runtime``)."""
