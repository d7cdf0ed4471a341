"""Open Inference Protocol (KServe v2): routes, tensors and request/response shapes."""
