"""`export_run`: a run directory as a plain Hugging Face model directory, loadable without evtlm.

``evtlm export --run runs/purchase --out exported/purchase`` writes::

    config.json, model.safetensors   the causal LM, LoRA merged into its weights (peft's
                                     merge_and_unload: the item-token rows too) or the fully
                                     fine-tuned model as it is
    tokenizer.json, tokenizer_config.json, ...   the run's tokenizer, item tokens included
    label_space.json                 the answers the run's decoder is constrained to
    README.md                        model card: base, task, how to score, the run's metrics

``AutoModelForCausalLM.from_pretrained(out)`` loads it (safetensors, no remote code, no peft) and
gives the logits evtlm's own inference model gives (`evtlm.decode.inference.load_for_inference` merges
the same way); `tests/test_export.py` checks that bit for bit.

**Per-prompt runs** (``task.formulation: example``) score an answer by the next-token logits
after the task's prompt, restricted to the label space: the exported LM alone reproduces the
run's scores.

**Stream runs** (``stream_head.safetensors`` in the run) score answers with evtlm's read-out
(`evtlm.train.stream_model.StreamLM`: the hidden state at each target's read position times the answer
rows, plus the copy path and history features), not with the LM head. The export still writes
the LM (its hidden states are the read-out's input), and copies the read-out beside it as
``stream_head.safetensors`` + ``evtlm_stream.json``; the card says plainly that those scores need
evtlm. This was chosen over refusing: the adapted LM is useful by itself (further fine-tuning,
embeddings), and nothing is lost.

>>> print(card_formulation("example"))        # doctest: +ELLIPSIS
per-prompt (one prompt per target): ... reproduce the run's scores with transformers alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from evtlm.errors import RunDirError

__all__ = ["export_run", "card_formulation", "metric_lines"]


def card_formulation(formulation: str) -> str:
    """One line of the card saying what the exported LM does and does not reproduce."""
    if formulation == "stream":
        return ("stream (every target of a window read in one pass): the run scores answers with evtlm's read-out "
                "(`stream_head.safetensors`, `evtlm_stream.json` beside the model: evtlm.train.stream_model.StreamLM over "
                "this LM's hidden states), not with the LM head; plain next-token logits are NOT the run's scores.")
    return ("per-prompt (one prompt per target): the answer is the label-space entry with the highest next-token "
            "logit after the task's prompt, so this model and the tokenizer reproduce the run's scores with "
            "transformers alone.")


def export_run(run_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``out_dir`` as a plain HF model directory from the finished run in ``run_dir``."""
    from evtlm.train.run_dir import load_run_model, require_finished
    from evtlm.train.stream_model import HEAD_FILE

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run = json.loads(require_finished(run_dir).read_text())
    if out_dir.resolve() == run_dir.resolve() or run_dir.resolve() in out_dir.resolve().parents:
        raise RunDirError(f"--out {out_dir} is inside the run directory", where="evtlm export --out",
                          fix="export to a directory outside the run (e.g. exported/<run name>)")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise RunDirError(f"{out_dir} already exists and is not empty", where="evtlm export --out",
                          fix="choose a new --out, or add --overwrite to replace it")
    model, tokenizer = load_run_model(run_dir)
    stream = getattr(model, "is_stream", False)
    lm = model.lm if stream else model
    merged = hasattr(lm, "merge_and_unload")
    if merged:  # LoRA (and trainable item-token rows) folded into the base weights: no peft needed to load
        lm = lm.merge_and_unload()
    # a temporary sibling renamed into place: an interrupted export never looks complete
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lm.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    for name in ("label_space.json",) + ((HEAD_FILE,) if stream else ()):
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, tmp / name)
    if stream:
        (tmp / "evtlm_stream.json").write_text(json.dumps(run["model"]["stream"], indent=1))
    (tmp / "README.md").write_text(_card(run_dir, run, merged=merged, stream=stream))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(out_dir)
    return out_dir


def metric_lines(metrics: dict[str, Any] | None) -> list[str]:
    """The run's evaluation as a small table: the task's primary metric for each method.

    >>> metric_lines({"split": "test", "n": 50, "primary_metric": "roc_auc",
    ...               "methods": {"model": {"roc_auc": 0.8312}, "gbt": {"roc_auc": 0.8}}})[2:]
    ['| method | roc_auc |', '| --- | --- |', '| model | 0.8312 |', '| gbt | 0.8000 |']
    """
    if not metrics or not metrics.get("methods"):
        return []
    key = metrics.get("primary_metric", "?")
    rows = [f"| {name} | {values[key]:.4f} |" for name, values in metrics["methods"].items()
            if isinstance(values.get(key), (int, float))]
    return ["", f"## The run's evaluation ({metrics.get('split', '?')} split, N = {metrics.get('n', '?')})",
            f"| method | {key} |", "| --- | --- |", *rows]


def _recipe_summary(run_dir: Path) -> dict[str, Any]:
    """Task, formulation and description from the run's resolved recipe (plain YAML: no schema needed)."""
    import yaml

    path = run_dir / "recipe.resolved.yaml"
    recipe = yaml.safe_load(path.read_text()) if path.is_file() else {}
    task = recipe.get("task") or {}
    return {"name": recipe.get("name"), "description": recipe.get("description"), "task": task.get("name", "?"),
            "formulation": task.get("formulation", "example"), "lora": recipe.get("lora") or {}}


def _card(run_dir: Path, run: dict[str, Any], *, merged: bool, stream: bool) -> str:
    """The exported directory's README.md (Hugging Face model card front matter + what it is)."""
    info = _recipe_summary(run_dir)
    formulation = "stream" if stream else info["formulation"]
    base = run.get("base") or {}
    base_used = base.get("used", run["model"].get("base", "?"))
    labels = json.loads((run_dir / "label_space.json").read_text()) if (run_dir / "label_space.json").is_file() else []
    shown = ", ".join(repr(x) for x in labels[:8]) + (f" … ({len(labels)} in all)" if len(labels) > 8 else "")
    lora = info["lora"]
    how = (f"LoRA (r={lora.get('r')}, alpha={lora.get('alpha')}, targets {', '.join(lora.get('target_modules') or [])}) "
           "merged into the weights with peft's merge_and_unload" if merged else "fully fine-tuned weights, as saved by the run")
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    from evtlm.text.bases import NAMED_BASES

    named = NAMED_BASES.get(base_used)  # a named base: its license and origin are known
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [evtlm, e-commerce, event-logs]",
        *([f"license: {named.license.lower()}", f"base_model: {named.hub_id}"] if named else []),
        "---",
        f"# {info['name'] or run_dir.name} (exported from evtlm)",
        "",
        info["description"] or "",
        "",
        f"- task: `{info['task']}`; label space: {shown}",
        f"- base: {base_used} ({base.get('kind', '?')}" + (f"; {named.origin}, {named.license}" if named else "") + f"); {how}",
        f"- formulation: {card_formulation(formulation)}",
        f"- exported from the run directory `{run_dir.resolve()}` (its README.md, recipe.resolved.yaml and "
        "report.md say how it was trained and how well it does)",
        "",
        "## Load",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained(DIR)   # safetensors; no peft, no remote code",
        "tokenizer = AutoTokenizer.from_pretrained(DIR)      # with the run's item tokens, if any",
        "```",
    ]
    if not stream:
        lines += [
            "",
            "## Score an answer (what `evtlm predict` does for closed label spaces)",
            "```python",
            "import json, torch",
            "labels = json.load(open(f'{DIR}/label_space.json'))",
            "first = [tokenizer(a, add_special_tokens=False).input_ids[0] for a in labels]",
            "ids = tokenizer(prompt, return_tensors='pt').input_ids       # the prompt as evtlm writes it",
            "probs = model(ids).logits[0, -1, first].softmax(-1)           # one probability per label",
            "```",
            "Multi-token answers (items under BPE without item tokens) are scored by their whole sequence "
            "log-likelihood in evtlm; the first-token shortcut above holds when answers start with distinct tokens.",
        ]
    lines += metric_lines(metrics)
    return "\n".join(lines) + "\n"
