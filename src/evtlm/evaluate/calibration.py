"""Purchase probabilities after the fact: a calibrator and the ``model+gbt`` stack, both fitted on
the VALIDATION split only (test labels never reach a fit).

This module puts the report's two purchase rows together (`purchase_extras`: ``model calibrated`` and
``model+gbt``) and names them; the calibrator (why, how ``auto`` chooses, figures and a worked
example) is `evtlm.evaluate.calibrator`, the stack `evtlm.evaluate.stacking`. It fits nothing on
the reported examples: their labels only state before/after figures.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from evtlm.evaluate.calibrator import (CALIBRATION_FILE, METHODS, Calibrator, choose_calibrator, fit_calibrator,
                                      load_calibration, save_calibration, to_logit)
from evtlm.evaluate.stacking import Stacker

__all__ = [
    "CALIBRATION_FILE", "CALIBRATED", "STACKED", "METHODS",
    "to_logit", "Calibrator", "fit_calibrator", "choose_calibrator", "save_calibration", "load_calibration",
    "Stacker", "PurchaseExtras", "purchase_extras",
]

CALIBRATED = "model calibrated"  # the model's probabilities through the calibrator: its own row
STACKED = "model+gbt"  # the stack's row


# ------------------------------------------------------------------------ evaluate's purchase rows
@dataclass
class PurchaseExtras:
    """What `evtlm.evaluate.harness` adds to a purchase report: rows, their seconds, the fitted calibrator
    and a JSON-able account (``metrics.json``'s ``calibration`` and ``stack``)."""

    preds: dict[str, np.ndarray]
    seconds: dict[str, float]
    calibrator: Calibrator
    info: dict[str, Any]
    curves: dict[str, Any]


def purchase_extras(p_valid: np.ndarray, y_valid: np.ndarray, p_report: np.ndarray, y_report: np.ndarray, *,
                    gbt: Any, index: Any, valid_examples: pd.DataFrame, report_examples: pd.DataFrame,
                    report_rows: np.ndarray | None = None, method: str = "auto", n_bins: int = 10,
                    seed: int = 0, valid_seconds: float = 0.0) -> PurchaseExtras:
    """Calibrate the model and stack it with ``gbt`` on validation; predict the reported examples.

    ``p_valid``/``y_valid``: the model's P(yes) and the labels of ``valid_examples``.
    ``p_report``/``y_report``: the model's row on the reported examples (``report_examples``),
    ``y_report`` only to state before/after figures, never to fit. ``report_rows``: when the
    reported split is validation, the positions of the reported examples in ``valid_examples``
    (the stack then reports its out-of-fold predictions there). ``gbt``: the fitted
    `evtlm.evaluate.baselines.GradientBoosting` of the report's gbt row.
    """
    from evtlm.evaluate.metrics import MetricWarning, binary_metrics

    in_sample = report_rows is not None
    t0 = time.perf_counter()
    if method == "auto":
        cal = choose_calibrator(y_valid, p_valid, n_bins=n_bins, seed=seed)
    else:
        cal = fit_calibrator(y_valid, p_valid, method=method, n_bins=n_bins)
    preds = {CALIBRATED: cal.apply(p_report)}
    seconds = {CALIBRATED: valid_seconds + time.perf_counter() - t0}

    def brief(p: np.ndarray) -> dict[str, float]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetricWarning)  # NaN AUC on one class: visible in the table
            m = binary_metrics(y_report, p, n_bins=n_bins)
        return {k: round(float(m[k]), 6) for k in ("roc_auc", "log_loss", "brier", "ece")}

    info: dict[str, Any] = {"calibration": {
        **{k: v for k, v in cal.to_json().items() if k != "fit"}, "file": CALIBRATION_FILE,
        "validation": cal.fit, "before": brief(p_report), "after": brief(preds[CALIBRATED]),
        "note": ("fitted on the split it is reported on (two parameters)" if in_sample
                 else "fitted on validation, reported on held-out examples"),
    }}
    if cal.method == "temperature" and cal.skipped is None:
        info["calibration"]["temperature"] = round(cal.temperature, 6)

    t0 = time.perf_counter()
    if cal.skipped is not None:
        info["stack"] = {"skipped": cal.skipped.replace("nothing to fit, probabilities left as they are",
                                                        "no stack can be fitted")}
    else:
        stacker = Stacker(seed=seed, threads=gbt.cfg.gbt.threads)
        x_valid = gbt.features(valid_examples, index)
        v_in = Stacker.inputs(p_valid, gbt.from_features(x_valid), x_valid)
        stacker.fit(v_in, y_valid)
        if in_sample:
            stacked = stacker.cross_fitted()[report_rows]
        else:
            x_report = gbt.features(report_examples, index)
            r_in = Stacker.inputs(p_report, gbt.from_features(x_report), x_report)
            stacked = stacker.predict(r_in)
        preds[STACKED] = stacked
        info["stack"] = {"learner": stacker.learner, "cv_log_loss": stacker.cv_log_loss, "fitted_on": "valid",
                         "n": int(len(y_valid)), "folds": len(stacker._split),
                         "inputs": ["model logit", "gbt logit"] + (list(gbt.columns) if stacker.learner == "trees" else []),
                         "note": ("out-of-fold predictions within validation" if in_sample
                                  else "fitted on validation, reported on held-out examples")}
        seconds[STACKED] = valid_seconds + time.perf_counter() - t0
    curves = {"calibration": {"valid": (np.asarray(y_valid), np.asarray(p_valid, dtype=np.float64), cal.apply(p_valid)),
                              "report": (np.asarray(y_report), np.asarray(p_report, dtype=np.float64), preds[CALIBRATED])}}
    return PurchaseExtras(preds, seconds, cal, info, curves)
