"""The report's PNG plots (matplotlib, Agg backend: files only, never a window), one function per figure,
each writing one file into the run directory and returning its name. It draws what it is given: which
methods and which plots a report shows is `evtlm.evaluate.report.write_report`'s choice, and it writes
nothing but the PNG files.

Plots per task: purchase -> ``roc.png`` (every method's ROC curve), ``reliability.png``
(observed buy rate against predicted probability) and ``calibration.png`` (the model's
reliability before and after the calibrator fitted on validation, `evtlm.evaluate.calibration`); next_action -> ``confusion.png`` (the model
and the best baseline, rows normalised); next_item -> ``hr_at_k.png`` (HR@K for K = 1..max K).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


# --------------------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path.name


def plot_roc(path: Path, y: np.ndarray, preds: dict[str, np.ndarray], split: str) -> str | None:
    from sklearn.metrics import roc_auc_score, roc_curve

    if len(np.unique(y)) < 2:
        return None  # undefined on one class
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, p in preds.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=2.5 if name == "model" else 1.4, label=f"{name} (AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"Purchase ROC ({split}, N={len(y)})",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_reliability(path: Path, y: np.ndarray, preds: dict[str, np.ndarray], n_bins: int, split: str) -> str:
    from evtlm.evaluate.metrics import ece, reliability_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfectly calibrated")
    for name, p in preds.items():
        c = reliability_curve(y, p, n_bins)
        full = c.count > 0
        ax.plot(c.confidence[full], c.frequency[full], marker="o", ms=4, lw=2.5 if name == "model" else 1.4,
                label=f"{name} (ECE {ece(y, p, n_bins):.3f})")
    ax.set(xlabel="predicted P(buy)", ylabel="observed buy rate", xlim=(0, 1), ylim=(0, 1.01),
           title=f"Purchase reliability ({split}, {n_bins} bins)")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_calibration(path: Path, sets: dict[str, tuple], n_bins: int, split: str) -> str:
    """The model's reliability before and after calibration: one panel for the validation split
    it was fitted on, one for the reported split. ``sets[name] = (y, p_raw, p_calibrated)``."""
    from evtlm.evaluate.metrics import ece, reliability_curve

    plt = _plt()
    shown = [(k, v) for k, v in sets.items() if len(v[0])]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 4.8), squeeze=False)
    titles = {"valid": "validation (fitted here)", "report": f"{split} (reported)"}
    for ax, (name, (y, raw, cal)) in zip(axes[0], shown):
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfectly calibrated")
        for label, p, style in (("model, raw softmax", raw, "o-"), ("model calibrated", cal, "s-")):
            c = reliability_curve(y, p, n_bins)
            full = c.count > 0
            ax.plot(c.confidence[full], c.frequency[full], style, ms=4, lw=1.8, label=f"{label} (ECE {ece(y, p, n_bins):.3f})")
        ax.set(xlabel="predicted P(buy)", ylabel="observed buy rate", xlim=(0, 1), ylim=(0, 1.01),
               title=f"{titles.get(name, name)}, N={len(y)}")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Purchase calibration before / after ({n_bins} bins)")
    return _save(fig, path)


def plot_confusion(path: Path, y: np.ndarray, preds: dict[str, np.ndarray], names: list[str], split: str) -> str:
    """Row-normalised confusion matrices (true rows, predicted columns), counts annotated."""
    from evtlm.evaluate.metrics import confusion

    plt = _plt()
    shown = list(preds.items())
    fig, axes = plt.subplots(1, len(shown), figsize=(4.6 * len(shown) + 0.6, 4.4), squeeze=False)
    keep = y >= 0  # an answer outside the label space has no row
    for col, (ax, (name, probs)) in enumerate(zip(axes[0], shown)):
        cm = confusion(y[keep], probs[keep].argmax(axis=1), n_classes=len(names))
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
        ax.set_yticks(range(len(names)), names if col == 0 else [])  # rows are shared: label them once
        ax.set(xlabel="predicted action", ylabel="true action" if col == 0 else "", title=f"{name}")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="share of the true action's examples")
    fig.suptitle(f"Next action confusion ({split}, N={len(y)})")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


def plot_hr_curve(path: Path, y: np.ndarray, preds: dict[str, np.ndarray], split: str) -> str:
    from evtlm.evaluate.metrics import ranks

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, ranked in preds.items():
        r = ranks(ranked, y)  # 1-based rank, 0 = not in the list (cold items included)
        k = np.arange(1, ranked.shape[1] + 1)
        hr = ((r[None, :] >= 1) & (r[None, :] <= k[:, None])).mean(axis=1)
        ax.plot(k, hr, marker="o", ms=3, lw=2.5 if name == "model" else 1.4, label=name)
    ax.set(xlabel="K (list length)", ylabel="HR@K (share of examples hit)", ylim=(0, None),
           title=f"Next item: hit rate by list length ({split}, N={len(y)})")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
