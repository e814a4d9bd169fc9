"""The evaluation report: a Markdown table (best value per column in bold), a one-paragraph
reading, a plain-text table for the terminal, the calibration section and ``report.md`` with the
task's PNG plots (drawn by `evtlm.evaluate.report_plots`). It formats a result of
`evtlm.evaluate.harness` as it is: it computes no metric and fits nothing.

>>> r = {"task": "purchase", "split": "test", "n": 100, "primary_metric": "roc_auc", "greater_is_better": True,
...      "methods": {"model": {"roc_auc": 0.81, "log_loss": 0.40, "seconds": 1.0},
...                  "gbt": {"roc_auc": 0.78, "log_loss": 0.38, "seconds": 0.2}}}
>>> print(markdown_table(r))
| method | N | ROC-AUC | log loss | seconds |
|---|---|---|---|---|
| model | 100 | **0.8100** | 0.4000 | 1.0 |
| gbt | 100 | 0.7800 | **0.3800** | 0.2 |
>>> print(reading(r))
On 100 test examples the model's ROC-AUC is 0.8100 against 0.7800 for the best baseline (gbt): the model beats it by 0.0300 (3.8% relative).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from evtlm.evaluate.report_plots import plot_calibration, plot_confusion, plot_hr_curve, plot_reliability, plot_roc

__all__ = ["markdown_table", "text_table", "reading", "write_report"]

NAMES = {"roc_auc": "ROC-AUC", "log_loss": "log loss", "brier": "Brier", "ece": "ECE", "accuracy": "accuracy",
         "macro_f1": "macro-F1", "positive_rate": "positive rate"}


def _columns(result: dict[str, Any]) -> list[str]:
    """The task's metrics present in the result, in the task's order (`Task.metric_names`; an
    "@k" metric at every k the result has, k by k)."""
    from evtlm.tasks import TASKS

    present = {k for m in result["methods"].values() for k in m if k != "seconds"}
    names = TASKS[result["task"]].metric_names if result["task"] in TASKS else tuple(sorted(present))
    ranked = [n[:-2] for n in names if n.endswith("@k")]
    ks = sorted({int(c.split("@")[1]) for c in present if "@" in c and c.split("@")[0] in ranked})
    order = [f"{m}@{k}" for k in ks for m in ranked] + [n for n in names if not n.endswith("@k")]
    return [c for c in order if c in present]


def _lower_is_better(result: dict[str, Any]) -> frozenset[str]:
    from evtlm.tasks import TASKS

    return TASKS[result["task"]].lower_is_better if result["task"] in TASKS else frozenset()


def _label(col: str) -> str:
    if "@" in col:
        m, k = col.split("@")
        return {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR"}[m] + "@" + k
    return NAMES.get(col, col)


def _best(result: dict[str, Any], col: str) -> float | None:
    values = [m.get(col) for m in result["methods"].values()]
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None
    return min(values) if col in _lower_is_better(result) else max(values)


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def markdown_table(result: dict[str, Any]) -> str:
    """Methods as rows, metrics as columns, the best value of each metric column in bold."""
    cols = _columns(result)
    lines = ["| method | N | " + " | ".join(_label(c) for c in cols) + " | seconds |",
             "|" + "---|" * (len(cols) + 3)]
    for name, m in result["methods"].items():
        cells = []
        for c in cols:
            text = _fmt(m.get(c))
            best = _best(result, c)
            cells.append(f"**{text}**" if best is not None and m.get(c) == best else text)
        lines.append(f"| {name} | {result['n']} | " + " | ".join(cells) + f" | {m.get('seconds', float('nan')):.1f} |")
    return "\n".join(lines)


def text_table(result: dict[str, Any]) -> str:
    """The same table for a terminal: aligned columns, ``*`` after each column's best value."""
    cols = _columns(result)
    header = ["method", "N"] + [_label(c) for c in cols] + ["seconds"]
    rows = []
    for name, m in result["methods"].items():
        cells = [name, str(result["n"])]
        for c in cols:
            best = _best(result, c)
            cells.append(_fmt(m.get(c)) + ("*" if best is not None and m.get(c) == best else " "))
        rows.append(cells + [f"{m.get('seconds', float('nan')):.1f}"])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)])


TIE = 0.01  # a model within 1% (relative) of the best baseline is reported as a tie, as in bench/quality.py


def reading(result: dict[str, Any]) -> str:
    """One paragraph: does the model beat the best baseline on the primary metric, by how much."""
    metric, greater = result["primary_metric"], result.get("greater_is_better", True)
    methods = result["methods"]
    label, n, split = _label(metric), result["n"], result["split"]
    model = methods.get("model", {}).get(metric)
    others = {k: v.get(metric) for k, v in methods.items() if not model_row(k) and v.get(metric) is not None}
    if model is None or not others:
        return f"On {n} {split} examples {label} is undefined for the model or every baseline (see the table)."
    best_name = (max if greater else min)(others, key=others.get)
    best = others[best_name]
    diff = (model - best) if greater else (best - model)
    rel = f" ({abs(diff) / abs(best):.1%} relative)" if best else ""
    head = f"On {n} {split} examples the model's {label} is {model:.4f} against {best:.4f} for the best baseline ({best_name})"
    if best and abs(diff) < TIE * abs(best):  # within 1%: run-to-run noise, never a win (bench/quality.py's rule)
        verdict = f"a tie (the model is {'ahead' if diff > 0 else 'behind' if diff < 0 else 'level'} by {abs(diff):.4f}{rel})."
    elif diff > 0:
        verdict = f"the model beats it by {diff:.4f}{rel}."
    elif diff == 0:
        verdict = "a tie."
    else:
        verdict = f"the model trails it by {-diff:.4f}{rel}; the baseline is the one to beat."
    extra = ""
    if result.get("outside_label_space"):
        extra = (f" {result['outside_label_space']} of the {n} answers lie outside the label space (e.g. cold items) "
                 "and count as misses for every method.")
    if result.get("sampled"):
        extra += f" The {n} examples are a seeded sample of the {result['n_split']} in the split."
    return f"{head}: {verdict}{extra}{settings(result)}"


def settings(result: dict[str, Any]) -> str:
    """What the reading must say about how every method was run: history exclusion, overrides.

    >>> settings({"task": "next_item", "exclude_history_items": True, "overrides": ["decode.exclude_history_items=true"]})
    " Items already in an example's history are excluded from every method's ranking, the model's and each baseline's alike (decode.exclude_history_items). Evaluated with overrides of the run's recipe: decode.exclude_history_items=true."
    """
    out = ""
    if result.get("exclude_history_items"):
        out += (" Items already in an example's history are excluded from every method's ranking, the model's and each "
                "baseline's alike (decode.exclude_history_items).")
    if result.get("overrides"):
        out += f" Evaluated with overrides of the run's recipe: {' '.join(result['overrides'])}."
    return out


def model_row(name: str) -> bool:
    """The model's own row or a row built on it (calibrated, stacked): never a baseline to beat.

    >>> [model_row(n) for n in ("model", "model calibrated", "model+gbt", "gbt")]
    [True, True, True, False]
    """
    from evtlm.evaluate.calibration import CALIBRATED, STACKED

    return name in ("model", CALIBRATED, STACKED)


def calibration_section(result: dict[str, Any]) -> list[str]:
    """Markdown lines on the purchase calibrator and the model+gbt stack (none for other tasks).

    >>> r = {"split": "test", "calibration": {"skipped": "validation holds only class 0 (40 examples): nothing to fit"},
    ...      "stack": {"skipped": "validation holds only class 0 (40 examples): no stack can be fitted"}, "methods": {}}
    >>> print("\\n".join(calibration_section(r)[2:4]))
    Calibration skipped: validation holds only class 0 (40 examples): nothing to fit. The `model calibrated` row repeats the model's raw probabilities, which are not calibrated.
    <BLANKLINE>
    """
    from evtlm.evaluate.calibration import CALIBRATED, STACKED

    cal, stack = result.get("calibration"), result.get("stack")
    if not cal:
        return []
    split = result["split"]
    lines = ["## Calibration and the model+gbt stack (fitted on validation)", ""]
    if cal.get("skipped"):
        lines += [f"Calibration skipped: {cal['skipped']}. The `{CALIBRATED}` row repeats the model's raw "
                  "probabilities, which are not calibrated.", ""]
    else:
        what = {"platt": "Platt scaling", "temperature": "temperature scaling",
                "identity": "no rescaling (the identity had the lowest cross-fitted validation log loss)"
                }.get(cal["method"], cal["method"])
        b, a = cal["before"], cal["after"]
        lines += [
            f"`{CALIBRATED}`: the model's P(yes) through {what}, p' = sigmoid({cal['scale']:.4g} * logit(p) "
            f"{'+' if cal['shift'] >= 0 else '-'} {abs(cal['shift']):.4g}), fitted by log loss on {cal['n']} validation "
            f"examples (buy rate {cal['positive_rate']:.3f}); saved as `{cal.get('file', 'calibration.json')}`, which "
            f"`evtlm predict` applies. The ranking is unchanged (ROC-AUC {_fmt(b['roc_auc'])} before and "
            f"{_fmt(a['roc_auc'])} after); {cal.get('note', '')}.", "",
            f"| {split} | log loss | Brier | ECE |", "|---|---|---|---|",
            f"| model (raw softmax) | {_fmt(b['log_loss'])} | {_fmt(b['brier'])} | {_fmt(b['ece'])} |",
            f"| {CALIBRATED} | {_fmt(a['log_loss'])} | {_fmt(a['brier'])} | {_fmt(a['ece'])} |", "",
            f"The `model` row is the raw softmax over \" no\"/\" yes\"; only `{CALIBRATED}` went through this step.", "",
        ]
    if stack and stack.get("skipped"):
        lines += [f"`{STACKED}` skipped: {stack['skipped']}.", ""]
    elif stack:
        m = result.get("methods", {})
        cv = ", ".join(f"{k} {v:.4f}" for k, v in stack.get("cv_log_loss", {}).items()) or "no folds possible"
        vs = ""
        if STACKED in m and "gbt" in m:
            vs = f" Its {split} ROC-AUC is {_fmt(m[STACKED].get('roc_auc'))} against {_fmt(m['gbt'].get('roc_auc'))} for gbt."
        lines += [f"`{STACKED}`: a {stack['learner']} learner on {', '.join(stack['inputs'][:2])}"
                  f"{' and the gbt features' if len(stack['inputs']) > 2 else ''}, fitted on {stack['n']} validation "
                  f"examples (the gbt itself on training, as in its row), chosen by {stack['folds']}-fold cross-fitted "
                  f"validation log loss ({cv}); {stack['note']}.{vs}", ""]
    return lines


def write_report(run_dir: str | Path, result: dict[str, Any], curves: dict[str, Any]) -> list[str]:
    """``report.md`` and the task's plots in ``run_dir``; returns the file names written."""
    run_dir = Path(run_dir)
    task, split, y, preds = result["task"], result["split"], curves["y"], curves["preds"]
    plots: list[str] = []
    from evtlm.tasks import TASKS

    kind = TASKS[task].answer if task in TASKS else None  # a result of a task no longer registered: the HR curve
    if kind == "binary":
        plots += [p for p in (plot_roc(run_dir / "roc.png", y, preds, split),) if p]
        plots.append(plot_reliability(run_dir / "reliability.png", y, preds, curves.get("n_bins", 10), split))
        if curves.get("calibration"):
            plots.append(plot_calibration(run_dir / "calibration.png", curves["calibration"], curves.get("n_bins", 10), split))
    elif kind == "classes":
        metric = result["primary_metric"]
        others = {k: v.get(metric) or -1.0 for k, v in result["methods"].items() if k != "model"}
        shown = {"model": preds["model"]}
        if others:
            best = max(others, key=others.get)
            shown[best] = preds[best]
        plots.append(plot_confusion(run_dir / "confusion.png", y, shown, curves["class_names"], split))
    else:
        plots.append(plot_hr_curve(run_dir / "hr_at_k.png", y, preds, split))
    lines = [
        f"# Evaluation: {task} on the {split} split",
        "",
        reading(result),
        "",
        markdown_table(result),
        "",
        f"N = {result['n']} examples, the same for every method (best value per column in bold; lower is better "
        f"for {', '.join(_label(c) for c in _columns(result) if c in _lower_is_better(result)) or 'none'}). Baselines are fitted on the training split and see "
        "only events before each example's label time. Seconds: fit + predict (baselines), decoding (model).",
        "",
    ]
    lines += calibration_section(result)
    lines += [f"![{p}]({p})" for p in plots] + [""]
    (run_dir / "report.md").write_text("\n".join(lines))
    return ["metrics.json", "report.md", *plots] + (["calibration.json"] if result.get("calibration") else [])
