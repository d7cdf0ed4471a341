"""TensorFlow Serving REST API: routes and request/response shapes."""
