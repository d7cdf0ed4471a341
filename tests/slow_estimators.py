"""A module an admin could trust in config: an estimator whose predict never ends."""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class EndlessClassifier(ClassifierMixin, BaseEstimator):
    """Fits like a normal classifier; predict loops forever (a broken model)."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):
        while True:
            pass
