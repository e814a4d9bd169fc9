"""The ``model+gbt`` stack: `Stacker`, fitted by cross-fitting within VALIDATION only. It takes the
gbt's features and logit as it is given them (the gbt itself is fitted on training by
`evtlm.evaluate.baselines`, never here), never sees test labels, and writes no file; the report's
row is put together by `evtlm.evaluate.calibration.purchase_extras`.

**Why stack.** Gradient-boosted trees read counts and recency directly; the model reads the text.
``model+gbt`` combines them: the inputs are the model's logit, the logit of the ``gbt`` baseline
(fitted on the training split, as in its own row) and the gbt's own features
(`evtlm.evaluate.baselines.GradientBoosting.features`, not a copy). Two small learners are tried,

- ``logistic``: standardised ``[model logit, gbt logit]`` -> logistic regression,
- ``trees``: ``[gbt features, model logit, gbt logit]`` -> a small HistGradientBoosting,

each scored by 5-fold cross-fitting **within validation** (out-of-fold log loss); the better one
is refitted on all of validation and predicts the split under report. When that split is
validation itself, the reported predictions are the out-of-fold ones (no example is scored by a
fit that saw its label).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evtlm.errors import TaskError
from evtlm.evaluate.calibrator import EPS, _folds, to_logit


# ------------------------------------------------------------------------------------ stacker
class Stacker:
    """``model+gbt``: the model's logit, the gbt's logit and the gbt's features -> P(yes).

    ``fit`` scores each learner of :attr:`LEARNERS` by out-of-fold log loss (stratified
    ``folds``-fold cross-fitting on the data it is given, which must be validation) and refits
    the best on all of it; ``cross_fitted`` gives the chosen learner's out-of-fold predictions.
    """

    LEARNERS = ("logistic", "trees")

    def __init__(self, folds: int = 5, seed: int = 0, threads: int | None = 1) -> None:
        self.folds, self.seed, self.threads = folds, seed, threads
        self.learner: str | None = None
        self.cv_log_loss: dict[str, float] = {}

    @staticmethod
    def inputs(p_model: np.ndarray, p_gbt: np.ndarray, features: pd.DataFrame) -> dict[str, np.ndarray]:
        """Each learner's input matrix: [n, 2] logits; [n, F + 2] features (NaN kept) and logits."""
        logits = np.c_[to_logit(p_model), to_logit(p_gbt)]
        return {"logistic": logits, "trees": np.c_[features.to_numpy(dtype=np.float64), logits]}

    def _make(self, learner: str, n: int):
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if learner == "logistic":
            return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        # small on purpose: validation is a few thousand rows at most
        return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, max_leaf_nodes=8,
                                              min_samples_leaf=max(5, min(40, n // 20)), l2_regularization=1.0,
                                              early_stopping=False, random_state=self.seed)

    def _fit_one(self, learner: str, x: np.ndarray, y: np.ndarray):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(self.threads):
            return self._make(learner, len(y)).fit(x, y)

    def _proba(self, model, x: np.ndarray) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(self.threads):
            return model.predict_proba(x)[:, 1]

    def _oof(self, learner: str, x: np.ndarray, y: np.ndarray, folds) -> np.ndarray:
        out = np.empty(len(y))
        for tr, te in folds:
            out[te] = self._proba(self._fit_one(learner, x[tr], y[tr]), x[te])
        return out

    def fit(self, inputs: dict[str, np.ndarray], y: np.ndarray) -> Stacker:
        y = np.asarray(y, dtype=np.int64)
        if len(np.unique(y)) < 2:
            raise TaskError("the stack needs both classes in validation", where="evtlm.evaluate.calibration.Stacker",
                            fix="widen split.valid_days")
        self._y, self._inputs = y, inputs
        self._split = _folds(y, self.folds, self.seed)
        if self._split:
            for learner in self.LEARNERS:
                p = np.clip(self._oof(learner, inputs[learner], y, self._split), EPS, 1 - EPS)
                self.cv_log_loss[learner] = round(float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))), 6)
            self.learner = min(self.LEARNERS, key=lambda k: self.cv_log_loss[k])  # ties: logistic
        else:
            self.learner = "logistic"  # too few of a class to cross-fit: the two-parameter learner
        self.model = self._fit_one(self.learner, inputs[self.learner], y)
        return self

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._proba(self.model, inputs[self.learner])

    def cross_fitted(self) -> np.ndarray:
        """Out-of-fold predictions of the chosen learner on the data it was fitted on."""
        if not self._split:
            return self.predict(self._inputs)  # no folds possible; stated as in-sample by the caller
        return self._oof(self.learner, self._inputs[self.learner], self._y, self._split)
