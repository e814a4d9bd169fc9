"""How far can next_action macro-F1 go on the Taobao sample? Upper bounds from information the task forbids.

    python -m bench.next_action_ceiling            # ~1-2 min on 2 cores

Issue 10 asks the model for macro-F1 >= 0.42 on `recipes/taobao_next_action.yaml` (full test
split, per-class decision offsets fitted on validation). The model and the shipped gbt baseline
both stop at about 0.37-0.38, and a 4x larger model ties (see that recipe). This benchmark asks
whether the bar is reachable at all from what is known before the target event, by giving the
same gradient-boosted trees *more* than the task allows:

1. **shipped**: `evtlm.data.history.next_action_features` (what the gbt baseline reads, and what
   the model reads beside the stream through ``model.history_features``);
2. **+ global rates**: also the last item's and its category's action shares over *all* users'
   events up to the last event (allowed: the past of the shop), and the user's own transition
   counts out of their last action;
3. **+ target gap** (forbidden): the seconds between the last event and the target event;
4. **+ target gap and item** (forbidden): also the target event's own item: whether it is the last
   event's item, how often the user saw it and carted it before.

Every set is fitted with the gbt baseline's own settings (``eval.gbt_action``) for three seeds
(the seed draws the trees' early-stopping hold-out); offsets are fitted on validation as the
harness does (`evtlm.evaluate.metrics.fit_class_offsets`), and test macro-F1 is the mean over
seeds with its spread. If even (4) stays below the bar, the bar is out of reach on this log with
this label set, whatever the model.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd

from bench.common import REPO, row, write_result

NAME = "next_action_ceiling"
RECIPE = REPO / "recipes" / "taobao_next_action.yaml"
BAR = 0.42  # issue 10's macro-F1 target
SEEDS = (0, 1, 2)


def global_rates(index, start: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
    """The last event's item and category: how all users acted on them up to that event (shares
    of cart / favorite / purchase among their events, and the count), and the user's own
    transitions out of their last action (shares of each next action, and the count)."""
    from evtlm.recipe import ACTIONS

    n_act = len(ACTIONS)
    last = np.where(end > start, end - 1, -1)
    t_last = np.where(last >= 0, index.ts[np.maximum(last, 0)], np.iinfo(np.int64).min)
    out: dict[str, np.ndarray] = {}
    # time ranks over the whole shop: "events of code c up to time t" is then a run of composite
    # keys code * width + rank, counted by two searchsorted calls (as history._code_counts does)
    order = np.argsort(index.ts, kind="stable")
    sorted_ts = index.ts[order]
    rank = np.empty(index.n, np.int64)
    rank[order] = np.arange(index.n)
    upto = np.searchsorted(sorted_ts, t_last, "right")  # events at or before the last one, all users
    width = index.n + 1
    for name, codes in (("item", index.item), ("category", index.category)):
        query = np.where(last >= 0, codes[np.maximum(last, 0)], -1)
        base = np.maximum(query, 0).astype(np.int64) * width
        total = np.zeros(len(start))
        counts = []
        for a in range(n_act):
            sel = (codes >= 0) & (index.action == a)
            keys = np.sort(codes[sel].astype(np.int64) * width + rank[sel])
            c = np.searchsorted(keys, base + upto, "left") - np.searchsorted(keys, base, "left")
            counts.append(np.where(query >= 0, c, 0).astype(float))
            total += counts[-1]
        out[f"all_{name}_events"] = np.where(query >= 0, total, np.nan)
        for a in range(1, n_act):  # constant columns (an action this log lacks) are dropped before fitting
            out[f"all_{name}_{ACTIONS[a]}"] = np.where(query >= 0, counts[a] / np.maximum(total, 1), np.nan)
    # the user's own transitions (q-1 -> q, both inside the slice) out of the last action
    same_user = np.r_[False, index.user[1:] == index.user[:-1]]
    prev = np.r_[-1, index.action[:-1]]
    pair = np.where(same_user & (prev >= 0) & (index.action >= 0), prev * n_act + index.action, -1)
    last_action = np.where(last >= 0, index.action[np.maximum(last, 0)], -1)
    lo = np.minimum(start + 1, end)
    hits = np.flatnonzero(pair >= 0)  # pairs sorted by (pair code, position): counts by searchsorted
    keyed = np.sort(pair[hits].astype(np.int64) * (index.n + 1) + hits)
    rows, total = [], np.zeros(len(start))
    for b in range(n_act):
        base = (np.maximum(last_action, 0) * n_act + b).astype(np.int64) * (index.n + 1)
        c = np.searchsorted(keyed, base + end, "left") - np.searchsorted(keyed, base + lo, "left")
        rows.append(np.where(last_action >= 0, c, 0).astype(float))
        total += rows[-1]
    for b in range(n_act):
        out[f"own_after_last_{ACTIONS[b]}"] = rows[b] / np.maximum(total, 1)
    out["own_after_last_n"] = total
    return out


def _ns(times) -> np.ndarray:
    """Label times (int64 ns, or datetimes of any unit) as int64 nanoseconds since the epoch."""
    return pd.to_datetime(pd.Series(times), utc=True).dt.as_unit("ns").astype("int64").to_numpy()


def forbidden(index, frame: pd.DataFrame, start: np.ndarray, end: np.ndarray, with_item: bool) -> dict[str, np.ndarray]:
    """What the task must not read (the target event itself, at position ``end``): its gap after the
    last event and, with ``with_item``, its item's place in the user's history."""
    from evtlm.data.history import _code_counts
    from evtlm.recipe import ACTIONS

    has = end > start
    t_last = index.ts[np.maximum(end - 1, 0)]
    out = {"target_gap_s": np.where(has, (_ns(frame["label_time"]) - t_last) / 1e9, np.nan)}
    if with_item:
        item = index.item[end]
        out["target_is_last_item"] = np.where(has, index.item[np.maximum(end - 1, 0)] == item, False).astype(float)
        out["target_item_seen"] = _code_counts(index.item, np.ones(index.n, bool), item, start, end)
        out["target_item_carted"] = _code_counts(index.item, index.action == ACTIONS.index("cart"), item, start, end)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    from evtlm.data.history import HistoryIndex, next_action_features, positions_in
    from evtlm.data.prepare import prepare
    from evtlm.evaluate.metrics import apply_offsets, fit_class_offsets
    from evtlm.evaluate.tree_baselines import _fit_trees
    from evtlm.recipe import load_recipe
    from sklearn.metrics import f1_score, log_loss

    recipe = load_recipe(RECIPE)
    prepared = prepare(recipe, progress=False)
    index = HistoryIndex(prepared.events)
    labels = ["view", "cart", "favorite", "purchase"]
    frames = {k: prepared.index[k] for k in ("train", "valid", "test")}
    bounds = {k: index.bounds(f["user_id"], f["label_time"]) for k, f in frames.items()}
    for k, (start, end) in bounds.items():  # the target event sits right after its history
        assert (index.ts[end] == _ns(frames[k]["label_time"])).all(), k
    base = {k: next_action_features(index, *bounds[k]) for k in frames}
    rates = {k: pd.DataFrame(global_rates(index, *bounds[k])) for k in frames}
    sets = {
        "shipped features": lambda k: base[k],
        "+ global item/category rates, own transitions": lambda k: pd.concat([base[k], rates[k]], axis=1),
        "+ the target's own gap (forbidden)": lambda k: base[k].assign(**forbidden(index, frames[k], *bounds[k], False)),
        "+ the target's own gap and item (forbidden)": lambda k: base[k].assign(**forbidden(index, frames[k], *bounds[k], True)),
    }
    y = {k: positions_in(labels, f["label"]) for k, f in frames.items()}
    out: dict[str, Any] = {"n": {k: len(f) for k, f in frames.items()},
                           "test_label_counts": frames["test"]["label"].value_counts().to_dict(), "sets": {}}
    for name, make in sets.items():
        x = {k: make(k) for k in frames}
        cols = [c for c in x["train"].columns if x["train"][c].nunique(dropna=False) > 1]
        scores = []
        t0 = time.perf_counter()
        for seed in SEEDS[:1] if quick else SEEDS:
            cfg = recipe.eval.gbt_action.model_copy(update={"seed": seed})
            model = _fit_trees(cfg, x["train"][cols], y["train"])
            p_valid, p_test = model.predict_proba(x["valid"][cols]), model.predict_proba(x["test"][cols])
            decided = apply_offsets(p_test, fit_class_offsets(y["valid"], p_valid))
            scores.append({"macro_f1": float(f1_score(y["test"], decided, average="macro")),
                           "per_class_f1": dict(zip(labels, np.round(f1_score(y["test"], decided, average=None), 3).tolist())),
                           "accuracy": float((decided == y["test"]).mean()),
                           "log_loss": float(log_loss(y["test"], p_test, labels=range(len(labels))))})
        f1s = np.array([s["macro_f1"] for s in scores])
        out["sets"][name] = {"columns": len(cols), "macro_f1_mean": round(float(f1s.mean()), 4),
                             "macro_f1_sd": round(float(f1s.std()), 4), "seconds": round(time.perf_counter() - t0, 1),
                             "seeds": scores}
        print(f"{name}: macro-F1 {f1s.mean():.4f} ± {f1s.std():.4f}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one seed per feature set")
    args = ap.parse_args(argv)
    data = REPO.parent / "shared" / "data" / "taobao" / "UserBehavior_head84k.csv"
    if not data.exists():
        print(f"skipped: {data} is absent (the Taobao sample from ../shared/data)")
        return 0
    details = run(args.quick)
    rows = []
    for name, s in details["sets"].items():
        per = s["seeds"][0]["per_class_f1"]
        rows.append(row(f"taobao_next_action, gbt on {name}: test macro-F1", s["macro_f1_mean"], BAR,
                        f"≥ {BAR} (issue 10's bar for the model)", 1.0, tie_rule=False,
                        note=f"± {s['macro_f1_sd']:.4f} over {len(s['seeds'])} seeds; per class (seed 0) "
                             + ", ".join(f"{k} {v:.3f}" for k, v in per.items())))
    write_result(NAME, "next_action ceiling: the gbt given more than the task allows, against issue 10's bar", rows, details)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
