"""ModelDock's own JSON API and the tutorial-compatible ``POST /predict``."""
