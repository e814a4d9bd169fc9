"""evtlm.evaluate.calibration: the calibrator recovers a planted temperature, lowers ECE on a miscalibrated
set and never changes the ranking; the model+gbt stack is fitted on validation only (test labels
cannot move it); a one-class validation split is skipped with a reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from evtlm.evaluate.calibration import (CALIBRATED, STACKED, Calibrator, Stacker, fit_calibrator, load_calibration,
                               purchase_extras, save_calibration, to_logit)
from evtlm.evaluate.metrics import brier, ece, log_loss, roc_auc


def _planted(n: int, temperature: float, shift: float = 0.0, seed: int = 0):
    """Labels drawn from true logits; the 'model' reports temperature * logit + shift."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.0, 1.5, n)
    y = (rng.random(n) < expit(z)).astype(int)
    return y, expit(temperature * z + shift)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_temperature_fit_recovers_a_known_temperature(temperature):
    y, p = _planted(40_000, temperature)
    cal = fit_calibrator(y, p, method="temperature")
    assert cal.skipped is None and cal.shift == 0.0
    assert cal.temperature == pytest.approx(temperature, rel=0.05)


def test_platt_recovers_scale_and_shift():
    y, p = _planted(40_000, 3.0, shift=1.0)  # model logit = 3 z + 1, so z = (logit - 1) / 3
    cal = fit_calibrator(y, p, method="platt")
    assert cal.scale == pytest.approx(1 / 3, rel=0.05) and cal.shift == pytest.approx(-1 / 3, abs=0.05)


@pytest.mark.parametrize("method", ["platt", "temperature"])
def test_calibration_lowers_ece_and_keeps_the_ranking(method):
    y_fit, p_fit = _planted(5_000, 2.0, shift=0.5, seed=1)  # "validation"
    y, p = _planted(5_000, 2.0, shift=0.5, seed=2)  # held out, the same miscalibration
    cal = fit_calibrator(y_fit, p_fit, method=method)
    q = cal.apply(p)
    assert ece(y, q) <= ece(y, p) and log_loss(y, q) <= log_loss(y, p) and brier(y, q) <= brier(y, p)
    assert roc_auc(y, q) == roc_auc(y, p)  # the same order, exactly
    assert (np.argsort(q, kind="stable") == np.argsort(p, kind="stable")).all()


def test_ranking_kept_for_collapsed_predictions():
    """A model near the base rate (the issue's case: std 0.004) gets a large scale, same order."""
    rng = np.random.default_rng(3)
    y = (rng.random(3_000) < 0.25).astype(int)
    p = 0.24 + 0.004 * rng.standard_normal(3_000) + 0.003 * y
    cal = fit_calibrator(y, p)
    assert cal.scale > 1 and roc_auc(y, cal.apply(p)) == roc_auc(y, p)
    assert cal.apply(p).std() > p.std()  # stretched toward what the evidence supports


def test_one_class_validation_is_skipped_with_a_reason(tmp_path):
    cal = fit_calibrator(np.zeros(30, int), np.linspace(0.1, 0.4, 30))
    assert cal.skipped and "only class 0" in cal.skipped and "30 examples" in cal.skipped
    p = np.array([0.2, 0.7])
    assert cal.apply(p).tolist() == p.tolist()
    save_calibration(tmp_path, cal)
    assert load_calibration(tmp_path) == cal


def test_saved_calibrator_round_trips(tmp_path):
    y, p = _planted(2_000, 2.0)
    cal = fit_calibrator(y, p)
    save_calibration(tmp_path, cal)
    back = load_calibration(tmp_path)
    assert isinstance(back, Calibrator) and back == cal
    assert np.array_equal(back.apply(p), cal.apply(p))
    assert load_calibration(tmp_path / "nowhere") is None


def test_to_logit_is_finite_at_zero_and_one():
    assert np.isfinite(to_logit([0.0, 1.0])).all()


# ------------------------------------------------------------------------------- the stack
class _FakeGbt:
    """What purchase_extras reads of a fitted gbt: features, from_features, columns, cfg.gbt.threads."""

    columns = ["n_cart", "hours_since_last"]

    class cfg:  # noqa: N801
        class gbt:  # noqa: N801
            threads = 1

    def __init__(self, frames: dict[int, pd.DataFrame]):
        self.frames = frames

    def features(self, examples, index):
        return examples[self.columns].reset_index(drop=True)

    def from_features(self, x):
        x = x[self.columns].to_numpy()
        return expit(0.8 * x[:, 0] - 0.05 * np.nan_to_num(x[:, 1], nan=40.0))

    def predict(self, examples, index):
        return self.from_features(examples)


def _stack_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    carts = rng.poisson(1.0, n).astype(float)
    hours = np.where(rng.random(n) < 0.1, np.nan, rng.exponential(20, n))
    text_signal = rng.normal(0, 1, n)  # what only the model reads
    z = -1.5 + 0.7 * carts - 0.03 * np.nan_to_num(hours, nan=40.0) + 1.0 * text_signal
    y = (rng.random(n) < expit(z)).astype(int)
    frame = pd.DataFrame({"n_cart": carts, "hours_since_last": hours})
    p_model = expit(0.05 * text_signal - 1.2)  # ranks on the text, badly scaled
    return frame, y, p_model


def test_stack_is_fitted_on_validation_only():
    """Changing the test labels never changes the stack (nor the calibrator): they are not read."""
    v_frame, y_v, p_v = _stack_data(1_500, 0)
    t_frame, y_t, p_t = _stack_data(800, 1)
    gbt = _FakeGbt({})

    def run(y_test):
        # platt: this model's level is off as well as its scale, which temperature alone cannot mend
        return purchase_extras(p_v, y_v, p_t, y_test, gbt=gbt, index=None, valid_examples=v_frame,
                               report_examples=t_frame, seed=0, method="platt")

    a = run(y_t)
    b = run(1 - y_t)
    c = run(np.zeros_like(y_t))
    for other in (b, c):
        assert np.array_equal(a.preds[STACKED], other.preds[STACKED])
        assert np.array_equal(a.preds[CALIBRATED], other.preds[CALIBRATED])
        assert a.info["stack"]["cv_log_loss"] == other.info["stack"]["cv_log_loss"]
        assert a.calibrator == other.calibrator
    # the stack reads both the model and the trees: better than either alone on held-out data
    auc_stack, auc_gbt, auc_model = roc_auc(y_t, a.preds[STACKED]), roc_auc(y_t, gbt.predict(t_frame, None)), roc_auc(y_t, p_t)
    assert auc_stack > max(auc_gbt, auc_model)
    assert roc_auc(y_t, a.preds[CALIBRATED]) == auc_model
    assert a.info["calibration"]["after"]["log_loss"] <= a.info["calibration"]["before"]["log_loss"]
    assert set(a.info["stack"]["cv_log_loss"]) == set(Stacker.LEARNERS)


def test_stack_on_the_validation_split_reports_out_of_fold_predictions():
    v_frame, y_v, p_v = _stack_data(600, 2)
    rows = np.arange(0, 600, 3)
    gbt = _FakeGbt({})
    out = purchase_extras(p_v, y_v, p_v[rows], y_v[rows], gbt=gbt, index=None, valid_examples=v_frame,
                          report_examples=v_frame.iloc[rows], report_rows=rows, seed=0)
    stacker = Stacker(seed=0).fit(Stacker.inputs(p_v, gbt.predict(v_frame, None), gbt.features(v_frame, None)), y_v)
    in_sample = stacker.predict(Stacker.inputs(p_v, gbt.predict(v_frame, None), gbt.features(v_frame, None)))[rows]
    assert not np.allclose(out.preds[STACKED], in_sample)  # not scored by the fit that saw the labels
    assert np.allclose(out.preds[STACKED], stacker.cross_fitted()[rows])
    assert "out-of-fold" in out.info["stack"]["note"] and "reported on" in out.info["calibration"]["note"]


def test_one_class_validation_skips_the_stack_too():
    v_frame, _, p_v = _stack_data(100, 3)
    out = purchase_extras(p_v, np.zeros(100, int), p_v[:10], np.r_[np.ones(5), np.zeros(5)].astype(int),
                          gbt=_FakeGbt({}), index=None, valid_examples=v_frame, report_examples=v_frame.head(10))
    assert STACKED not in out.preds and "only class 0" in out.info["stack"]["skipped"]
    assert np.array_equal(out.preds[CALIBRATED], p_v[:10])


def test_auto_keeps_a_calibrated_model_as_it_is_and_the_choice_travels(tmp_path):
    """eval.calibration auto: a model whose probabilities are already right keeps them (the
    identity wins out of fold); the choice and every candidate's score are saved, and the
    calibrator read back from the run directory gives the same probabilities."""
    from evtlm.evaluate.calibration import choose_calibrator, load_calibration, save_calibration

    rng = np.random.default_rng(3)
    z = rng.normal(-1.0, 1.2, 4_000)
    y = (rng.random(4_000) < expit(z)).astype(int)
    cal = choose_calibrator(y, expit(z))
    assert cal.method == "identity" and set(cal.cv_log_loss) == {"identity", "temperature", "platt"}
    assert cal.cv_log_loss["identity"] == min(cal.cv_log_loss.values())
    p = expit(z[:50])
    assert np.array_equal(cal.apply(p), p)
    save_calibration(tmp_path, cal)
    back = load_calibration(tmp_path)
    assert back == cal and np.array_equal(back.apply(p), p)
    shifted = choose_calibrator(y, expit(z + 1.0))  # every logit one too high: a shift mends it
    assert shifted.method == "platt" and shifted.cv_log_loss["platt"] < shifted.cv_log_loss["identity"]
