"""The purchase calibrator: `Calibrator`, fitted on the VALIDATION split only (`fit_calibrator`;
`choose_calibrator` for ``eval.calibration: auto``), and its file in a run directory (``calibration.json``:
`save_calibration`, `load_calibration`), with the logit and the stratified folds the stack shares
(`evtlm.evaluate.stacking`). It fits on the labels and probabilities it is given and nothing else: it
never reads a split, never sees test labels, and knows nothing of the report's rows
(`evtlm.evaluate.calibration`).

**Why calibrate.** The model's P(yes) is a softmax over two first-token logits, ``p = sigmoid(z)``
with ``z = logit(p) = l_yes - l_no``. Nothing in training makes that number match observed buy
rates. A calibrator maps the logit through one increasing affine function,

    p' = sigmoid(scale * z + shift),      scale > 0

- ``platt``: ``scale`` and ``shift`` both fitted (Platt scaling on the logit);
- ``temperature``: ``shift = 0``, ``scale = 1 / T`` (temperature scaling, one parameter),

by minimising the validation log loss. ``auto`` (``eval.calibration``'s default, `choose_calibrator`)
scores the identity, temperature and Platt by stratified 5-fold cross-fitting within validation
(out-of-fold log loss) and refits the best on all of it: the identity wins when no rescaling
helps out of fold. Why not one method for every log: Platt's shift carries validation's buy rate
to the test window, which a time split need not share, and which way that cuts differs by model.
Test ECE raw / temperature / platt on six trained models (two runs of the three shipped purchase
recipes): Online Retail repurchase 0.030 / 0.020 / 0.037 and 0.058 / 0.034 / 0.037 (validation
rate 0.295, test 0.339), synthetic 0.031 / 0.029 / 0.025 and 0.036 / 0.038 / 0.033, Taobao 0.071 /
0.067 / 0.051 and 0.077 / 0.092 / 0.052. Platt alone left test ECE above the raw model's once in
six, temperature alone twice, ``auto`` once (its choice: platt, temperature, platt, then
temperature, platt, platt). ``scale > 0`` keeps the order of the examples, so ROC-AUC
is unchanged (in float64 two probabilities above 1 - 1e-16 could round to 1.0; a fit never gets
there on real data). Validation with a single class cannot be fitted: the calibrator is then the
identity and says why (``skipped``). `evtlm.evaluate.harness` fits it, reports the model's row as it is
(``model``) and calibrated (``model calibrated``) and writes ``calibration.json``, which
`evtlm.predict.batch` applies: the same probabilities from both.

Worked example (synthetic logits that are twice too confident):

>>> rng = np.random.default_rng(0)
>>> z_true = rng.normal(-1.0, 1.5, 20_000)
>>> y = (rng.random(20_000) < expit(z_true)).astype(int)
>>> p_model = expit(2.0 * z_true)                                # overconfident: T = 2
>>> cal = fit_calibrator(y, p_model, method="temperature")
>>> round(cal.temperature, 1)
2.0
>>> from evtlm.evaluate.metrics import ece, roc_auc
>>> bool(ece(y, cal.apply(p_model)) < ece(y, p_model)), roc_auc(y, cal.apply(p_model)) == roc_auc(y, p_model)
(True, True)
>>> fit_calibrator(np.ones(50, int), np.full(50, 0.3)).skipped
'validation holds only class 1 (50 examples): nothing to fit, probabilities left as they are'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from evtlm.errors import RunDirError, TaskError

CALIBRATION_FILE = "calibration.json"  # the fitted calibrator in a run directory (evtlm predict applies it)
METHODS = ("platt", "temperature", "identity")  # identity: no rescaling (what auto may choose)
EPS = 1e-12  # probabilities are clipped to [EPS, 1 - EPS] before the logit (float32 0 or 1)
LOG_BOUND = 12.0  # |log scale| and |log T| stay below this (a degenerate fit cannot run away)


def to_logit(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """``log p - log(1 - p)`` in float64, p clipped to [1e-12, 1 - 1e-12].

    >>> to_logit([0.5, 0.8]).round(4).tolist()
    [0.0, 1.3863]
    """
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


def _nll(s: np.ndarray, y: np.ndarray) -> float:
    """Mean log loss of logits ``s`` (stable: log(1 + e^s) - y s)."""
    return float(np.mean(np.logaddexp(0.0, s) - y * s))


# --------------------------------------------------------------------------------- calibrator
@dataclass(frozen=True)
class Calibrator:
    """``p' = sigmoid(scale * logit(p) + shift)``; the identity when ``skipped`` says why."""

    method: str = "platt"
    scale: float = 1.0
    shift: float = 0.0
    n: int = 0  # validation examples it was fitted on
    positive_rate: float | None = None  # their buy rate
    fitted_on: str = "valid"
    skipped: str | None = None
    fit: dict[str, float] = field(default_factory=dict)  # validation log loss / ECE before and after
    cv_log_loss: dict[str, float] = field(default_factory=dict)  # auto: each candidate's out-of-fold log loss

    @property
    def temperature(self) -> float:
        """T = 1 / scale (temperature scaling's parameter; for Platt, the slope's inverse)."""
        return 1.0 / self.scale

    def apply(self, p: Sequence[float] | np.ndarray) -> np.ndarray:
        """Calibrated probabilities, float64 [n]; a copy of ``p`` when skipped."""
        p = np.asarray(p, dtype=np.float64)
        if self.skipped is not None or self.method == "identity":
            return p.copy()
        return expit(self.scale * to_logit(p) + self.shift)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["rule"] = "p = sigmoid(scale * logit(p_model) + shift), fitted by validation log loss; scale > 0 keeps the ranking"
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibrator:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def fit_calibrator(y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray, method: str = "platt",
                   fitted_on: str = "valid", n_bins: int = 10) -> Calibrator:
    """Fit ``method`` (``platt`` | ``temperature`` | ``identity``: none) on labels ``y`` (0/1) and the model's P(yes) ``p``.

    Platt is fitted on the standardised logit (well conditioned when the model's outputs barely
    vary) and mapped back: ``scale = a / sd``, ``shift = b - a * mean / sd``.
    """
    from scipy.optimize import minimize, minimize_scalar

    from evtlm.evaluate.metrics import ece

    if method not in METHODS:
        raise TaskError(f"unknown calibration method {method!r}", where="evtlm.evaluate.calibration",
                        fix=f"use one of {', '.join(METHODS)}")
    y = np.asarray(y, dtype=np.float64)
    z = to_logit(p)
    if len(y) != len(z):
        raise TaskError(f"{len(y)} labels for {len(z)} probabilities", where="evtlm.evaluate.calibration.fit_calibrator",
                        fix="pass the labels and predictions of the same examples")
    rate = float(y.mean()) if len(y) else None
    classes = np.unique(y)
    if len(classes) < 2:
        only = f"only class {int(classes[0])} ({len(y)} examples)" if len(classes) else "no examples"
        return Calibrator(method, n=len(y), positive_rate=rate, fitted_on=fitted_on,
                          skipped=f"{fitted_on_name(fitted_on)} holds {only}: nothing to fit, probabilities left as they are")
    if method == "identity":
        scale, shift = 1.0, 0.0
    elif method == "temperature":
        res = minimize_scalar(lambda t: _nll(z * np.exp(-t), y), bounds=(-LOG_BOUND, LOG_BOUND), method="bounded")
        scale, shift = float(np.exp(-res.x)), 0.0
    else:
        mu, sd = float(z.mean()), float(z.std())
        if sd < 1e-12:  # every prediction equal: only the level can be fitted (ranking: all ties)
            b = np.log(y.mean()) - np.log1p(-y.mean())
            scale, shift = 1.0, float(b - z[0])
        else:
            u = (z - mu) / sd

            def loss(t: np.ndarray) -> tuple[float, np.ndarray]:
                a = np.exp(t[0])
                s = a * u + t[1]
                r = expit(s) - y  # d loss / d s, per example
                return _nll(s, y), np.array([np.mean(r * u) * a, np.mean(r)])

            res = minimize(loss, np.array([np.log(sd), mu]), jac=True, method="L-BFGS-B",
                           bounds=[(-LOG_BOUND, LOG_BOUND), (None, None)])
            a, b = float(np.exp(res.x[0])), float(res.x[1])
            scale, shift = a / sd, b - a * mu / sd
    after = expit(scale * z + shift)
    fit = {"log_loss_before": _nll(z, y), "log_loss_after": _nll(scale * z + shift, y),
           "ece_before": ece(y.astype(int), expit(z), n_bins), "ece_after": ece(y.astype(int), after, n_bins)}
    return Calibrator(method, scale, shift, len(y), rate, fitted_on, None, {k: round(v, 6) for k, v in fit.items()})


def choose_calibrator(y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray, fitted_on: str = "valid",
                      n_bins: int = 10, folds: int = 5, seed: int = 0) -> Calibrator:
    """``eval.calibration: auto``: the identity, temperature and Platt scored by stratified
    ``folds``-fold out-of-fold log loss on (``y``, ``p``), the best refitted on all of them (ties:
    the simpler, in that order). Too few of a class to cross-fit: Platt, as a plain fit.

    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(-1.0, 1.5, 5_000)
    >>> y = (rng.random(5_000) < expit(z)).astype(int)
    >>> choose_calibrator(y, expit(2.0 * z)).method, choose_calibrator(y, expit(z)).method
    ('temperature', 'identity')
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    split = _folds(y, folds, seed) if len(np.unique(y)) == 2 else []
    if not split:
        return fit_calibrator(y, p, method="platt", fitted_on=fitted_on, n_bins=n_bins)
    scores: dict[str, float] = {}
    for method in ("identity", "temperature", "platt"):
        oof = np.empty(len(y))
        for tr, te in split:
            oof[te] = fit_calibrator(y[tr], p[tr], method, fitted_on, n_bins).apply(p[te])
        scores[method] = round(_nll(to_logit(oof), y), 6)
    best = min(scores, key=scores.get)  # dicts keep order: ties go to the simpler
    cal = fit_calibrator(y, p, method=best, fitted_on=fitted_on, n_bins=n_bins)
    return Calibrator(**{**asdict(cal), "cv_log_loss": scores})


def fitted_on_name(split: str) -> str:
    return {"valid": "validation", "test": "test", "train": "training"}.get(split, split)


def save_calibration(run_dir: str | Path, cal: Calibrator) -> Path:
    path = Path(run_dir) / CALIBRATION_FILE
    from evtlm.fsio import atomic_write_text  # predict reads it back: never half-written

    atomic_write_text(path, json.dumps(cal.to_json(), indent=1) + "\n")
    return path


def load_calibration(run_dir: str | Path) -> Calibrator | None:
    """The run's calibrator (``calibration.json``), None when the run has none (not evaluated yet)."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        return Calibrator.from_json(json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise RunDirError(f"{path} is not a calibrator ({e})", where=str(run_dir),
                          fix="run `evtlm evaluate --run DIR` again to rewrite it") from e


def _folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds, at most ``k`` and no more than the rarer class has members (none: [])."""
    from sklearn.model_selection import StratifiedKFold

    k = min(k, int(np.bincount(y.astype(int), minlength=2).min()))
    if k < 2:
        return []
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
