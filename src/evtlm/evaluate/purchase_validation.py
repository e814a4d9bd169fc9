"""purchase: the validation side of the report's ``model calibrated`` and ``model+gbt`` rows. The
model scores the validation split (all of it when the report is on validation, else a seeded
sample of `VALID_CAP`) and `evtlm.evaluate.calibration.purchase_extras` fits the calibrator and the
stack there. It reads validation only: test labels never reach a fit, and it writes no file
(`evtlm.evaluate.harness` saves the calibrator).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from evtlm.decode.inference import Decoder
from evtlm.evaluate.scoring import _prompts, model_predictions, sample_rows, score_model, truth
from evtlm.recipe import Recipe

VALID_CAP = 20_000  # purchase: validation examples the calibrator and the stack are fitted on (a seeded sample above)


def _purchase_extras(recipe: Recipe, prepared: Any, frames: Any, model: Any, tokenizer: Any, fitted: dict[str, Any],
                     index: Any, chosen: pd.DataFrame, p_model: np.ndarray, y: np.ndarray, report_rows: np.ndarray | None):
    """The ``model calibrated`` and ``model+gbt`` rows (`evtlm.evaluate.calibration.purchase_extras`): the model
    scores the validation split, the calibrator and the stack are fitted there and predict the
    reported examples. ``report_rows``: the reported positions when the report is on validation."""
    from evtlm.evaluate.baselines import get_baselines
    from evtlm.evaluate.calibration import purchase_extras

    t0 = time.perf_counter()
    space = list(prepared.label_space)
    vrows, p_valid = _purchase_valid_scores(recipe, prepared, model, tokenizer, report_rows is not None)
    valid_ex = frames["valid"].iloc[vrows].reset_index(drop=True) if len(vrows) else chosen.head(0)
    valid_seconds = time.perf_counter() - t0
    gbt = fitted.get("gbt")
    if gbt is None:  # the gbt row was not asked for: the stack still reads the same trees
        gbt = get_baselines("purchase", recipe.eval, names=["gbt"], level=recipe.task.level)[0]
        gbt.fit(frames["train"], index)
    return purchase_extras(np.asarray(p_valid, dtype=np.float64), truth("purchase", valid_ex["label_index"].to_numpy(), space),
                           p_model, y, gbt=gbt, index=index, valid_examples=valid_ex, report_examples=chosen,
                           report_rows=report_rows, method=recipe.eval.calibration, n_bins=recipe.eval.ece_bins,
                           seed=recipe.train.seed,
                           valid_seconds=valid_seconds)


def _purchase_valid_scores(recipe: Recipe, prepared: Any, model: Any, tokenizer: Any,
                           all_rows: bool) -> tuple[np.ndarray, np.ndarray]:
    """The validation rows the calibrator and the stack are fitted on (all of them when the
    report is on validation, else a seeded sample of `VALID_CAP`) and the model's P(yes) there."""
    space, valid = list(prepared.label_space), prepared.datasets.get("valid")
    stream = recipe.task.formulation == "stream"  # rows of a stream dataset are windows, not examples
    n_valid = 0 if valid is None else len(prepared.index["valid"]) if stream else len(valid)  # 0: skipped, with why
    vrows = np.arange(n_valid) if all_rows else sample_rows(n_valid, VALID_CAP, recipe.train.seed)
    if not n_valid:
        return vrows, np.zeros(0)
    if stream:
        v = np.asarray(model_predictions(model, recipe, valid, prepared.index["valid"]["example_id"].to_numpy()[vrows], 1))
        return vrows, v[:, space.index(" yes")] if v.ndim == 2 else v
    decoder = Decoder(model, tokenizer, "purchase", space, recipe.decode)
    return vrows, score_model(decoder, "purchase", _prompts(valid, vrows))
