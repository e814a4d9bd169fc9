"""The self-describing run directory a fine-tuning run leaves behind.

``runs/<name>/`` holds everything ``evtlm predict --run DIR`` needs, nothing outside it except a
hub base model named by id; ``evtlm evaluate --run DIR`` also reads the event log again, named by
its absolute path and checked against its fingerprint, so it works from any directory::

    recipe.resolved.yaml   the recipe with every default (and the data preset's values) written out
    adapter/ | model/      LoRA adapter (safetensors) or the fully fine-tuned model
    base/                  the scratch GPT-2 the adapter sits on (scratch bases only: a few MB)
    tokenizer/             the tokenizer (with item tokens when used)
    run.json               base used and why, model format, training summary, the data files
                           (absolute path, size, head hash: `evtlm.ingest.provenance`); written last
                           and atomically: without it the directory is not a finished run
    label_space.json       answers the decoder is constrained to
    data_report.json       what the data stage read, dropped and built
    train_log.csv, learning_curve.png, tensorboard/, checkpoints/   (written by fit)
    README.md              model card: data, base actually used and why, task, metrics, command

>>> resolve_run_dir(Recipe(name="purchase")).as_posix()
'runs/purchase'
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from evtlm.errors import RunDirError
from evtlm.fsio import atomic_write_text, fsync_tree, library_bars_off
from evtlm.recipe import Recipe, dump_recipe

RUN_MARKER = "run.json"  # written last, atomically: a run directory without it is not a finished run

__all__ = ["resolve_run_dir", "prepare_run_dir", "save_model", "require_finished", "load_run_model", "write_run_files", "model_card"]


def resolve_run_dir(recipe: Recipe) -> Path:
    """``output.dir / (output.name or recipe.name or "run")``."""
    return Path(recipe.output.dir) / (recipe.output.name or recipe.name or "run")


def prepare_run_dir(recipe: Recipe, resume: bool = False, is_main: bool = True) -> Path:
    """The run directory, refusing to mix a new run into an old one unless asked to."""
    run_dir = resolve_run_dir(recipe)
    has_files = run_dir.is_dir() and any(run_dir.iterdir())
    if has_files and not resume:
        if not recipe.output.overwrite:
            raise RunDirError(
                f"run directory {run_dir} already holds a run", where="output.dir/output.name",
                fix="add --resume to continue it, output.overwrite=true to replace it, or output.name=<new name>")
        if is_main:
            shutil.rmtree(run_dir)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        # a resumed run rewrites the weights: the directory is incomplete until it writes run.json again
        (run_dir / RUN_MARKER).unlink(missing_ok=True)
    return run_dir


def save_model(model: torch.nn.Module, tokenizer: Any, run_dir: Path, base_info: Any) -> dict[str, Any]:
    """Write adapter/ (peft) or model/ (full fine-tuning), tokenizer/, and base/ for scratch bases."""
    with library_bars_off():
        return _save_model(model, tokenizer, run_dir, base_info)


def _save_model(model: torch.nn.Module, tokenizer: Any, run_dir: Path, base_info: Any) -> dict[str, Any]:
    from peft import PeftModel

    run_dir = Path(run_dir)
    tokenizer.save_pretrained(run_dir / "tokenizer")
    stream = None
    if getattr(model, "is_stream", False):  # evtlm.train.stream_model.StreamLM: the LM plus its read-out
        from safetensors.torch import save_file

        from evtlm.train.stream_model import HEAD_FILE

        save_file(model.head_state(), str(run_dir / HEAD_FILE))
        stream = {"answer_ids": model.answer_ids.tolist(), "copy_path": bool(model.copy), "history_features": bool(model.features),
                  "target_features": int(model.target_features), "feature_bins": int(getattr(model, "feature_bins", 0)),
                  "markov": bool(getattr(model, "markov", False)),
                  "pairs": int(model.pair_weight.numel()) if getattr(model, "pair_memory", False) else 0}
        model = model.lm
    if isinstance(model, PeftModel):
        # save_embedding_layers=False: item-token rows travel as trainable tokens inside the
        # adapter, and "auto" would query the hub for the base config (a minute offline)
        model.save_pretrained(run_dir / "adapter", safe_serialization=True, save_embedding_layers=False)
        fmt = "adapter"
    else:
        model.save_pretrained(run_dir / "model", safe_serialization=True)
        fmt = "model"
    base = base_info.used if base_info.kind == "pretrained" else "base"
    if fmt == "adapter" and base_info.kind == "scratch":
        if (run_dir / "base").exists():
            shutil.rmtree(run_dir / "base")
        shutil.copytree(base_info.path, run_dir / "base")
    meta = {"format": fmt, "base": base, "base_kind": base_info.kind, "vocab_size": len(tokenizer), "stream": stream}
    return meta


def require_finished(run_dir: str | Path) -> Path:
    """``run_dir/run.json``, or a one-line error when the run that wrote the directory did not
    finish (a crash, a kill, a full disk): its weights may be half-written and are never read."""
    meta_path = Path(run_dir) / RUN_MARKER
    if not meta_path.is_file():
        raise RunDirError(f"{meta_path} is missing: not a finished run (`evtlm finetune` writes it last, once the "
                          "weights are saved)", where=str(run_dir),
                          fix="point --run at a directory written by `evtlm finetune`, or finish that run with --resume")
    return meta_path


def load_run_model(run_dir: str | Path, device: str | torch.device | None = None) -> tuple[torch.nn.Module, Any]:
    """(model in eval mode, tokenizer) from a run directory written by ``evtlm finetune``."""
    with library_bars_off():
        return _load_run_model(run_dir, device)


def _load_run_model(run_dir: str | Path, device: str | torch.device | None = None) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = Path(run_dir)
    meta = json.loads(require_finished(run_dir).read_text())["model"]
    needed = ["tokenizer", "model" if meta.get("format") == "model" else "adapter"]
    if meta.get("format") != "model" and meta.get("base_kind") == "scratch":
        needed.append("base")
    missing = [name for name in needed if not (run_dir / name).is_dir()]
    if missing:  # a copied or pruned directory: say so instead of a loader's guess (e.g. a hub repo id)
        raise RunDirError(f"the run directory lacks {', '.join(f'{m}/' for m in missing)}", where=str(run_dir),
                          fix="copy the whole run directory (or re-run `evtlm finetune`)")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "tokenizer", trust_remote_code=False)
    if meta["format"] == "model":
        with library_bars_off():  # a local read: its "Loading weights" bar is noise (and would surround an error)
            model = AutoModelForCausalLM.from_pretrained(run_dir / "model", use_safetensors=True, trust_remote_code=False)
    else:
        from peft import PeftModel

        from evtlm.text.bases import missing_fix, resolve_base

        # a named base (smollm2-135m) is its directory in this machine's evtlm cache
        base_path = run_dir / "base" if meta["base_kind"] == "scratch" else resolve_base(meta["base"])
        try:
            with library_bars_off():
                base = AutoModelForCausalLM.from_pretrained(base_path, use_safetensors=True, trust_remote_code=False)
        except (OSError, ValueError) as exc:  # older transformers read an absent directory as a repo id (HFValidationError)
            raise RunDirError(f"cannot load the base model {str(base_path)!r} the adapter was trained on", where=str(run_dir / "run.json"),
                              fix=missing_fix(meta["base"]) or "make the base available locally (a directory or the Hugging Face cache)") from exc
        if base.get_input_embeddings().num_embeddings < meta["vocab_size"]:
            base.resize_token_embeddings(meta["vocab_size"], mean_resizing=False)  # rows come from the adapter
        model = PeftModel.from_pretrained(base, run_dir / "adapter")
    if meta.get("stream"):  # the stream read-out (and copy path) around the LM
        from safetensors.torch import load_file

        from evtlm.train.stream_model import HEAD_FILE, StreamLM

        model = StreamLM(model, meta["stream"]["answer_ids"], copy=meta["stream"]["copy_path"],
                         features=meta["stream"].get("history_features", False),
                         target_features=meta["stream"].get("target_features", 0),
                         feature_bins=meta["stream"].get("feature_bins", 0),  # 0: run dirs from before the bins
                         markov=meta["stream"].get("markov", False), pairs=meta["stream"].get("pairs", 0))
        model.load_state_dict(load_file(str(run_dir / HEAD_FILE)), strict=False)
    if device is not None:
        model.to(device)
    return model.eval(), tokenizer


def write_run_files(run_dir: Path, recipe: Recipe, *, prepared: Any, base_info: Any, tokenizer_info: Any,
                    model_meta: dict[str, Any], fit_result: Any, command: str, metrics: dict[str, Any] | None = None) -> None:
    """recipe.resolved.yaml, run.json, label_space.json, data_report.json and README.md."""
    run_dir = Path(run_dir)
    # the data section with its preset merged in: reloading it gives exactly these settings
    from evtlm.ingest.presets import resolve_data_config

    resolved = recipe.model_copy(update={"data": resolve_data_config(recipe.data)})
    atomic_write_text(run_dir / "recipe.resolved.yaml", dump_recipe(resolved))
    atomic_write_text(run_dir / "label_space.json", json.dumps(list(prepared.label_space), indent=1, ensure_ascii=False))
    (run_dir / "data_report.json").write_text(json.dumps(prepared.report, indent=1, default=str, ensure_ascii=False))
    summary = _fit_summary(fit_result)
    from evtlm.ingest.provenance import data_files

    run = {
        "model": model_meta,
        "base": base_info.to_dict(),
        "tokenizer": tokenizer_info.to_dict() if hasattr(tokenizer_info, "to_dict") else tokenizer_info,
        "training": summary,
        "command": command,
        # the input files by absolute path, size and head hash: evaluate checks them (evtlm.ingest.provenance)
        "data_files": data_files(resolved.data),
    }
    (run_dir / "README.md").write_text(model_card(recipe, prepared=prepared, base_info=base_info, model_meta=model_meta,
                                                   training=summary, command=command, metrics=metrics))
    fsync_tree(run_dir)  # the weights, tokenizer and files above are on disk before the marker
    atomic_write_text(run_dir / RUN_MARKER, json.dumps(run, indent=1, default=str))  # last: the run is complete


def _fit_summary(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    return {
        "steps": result.global_step, "total_steps": result.total_steps, "best_step": result.best_step,
        "metric_for_best": result.metric_for_best, "best_metric": result.best_metric,
        "stopped_early": result.stopped_early, "restored_best": result.restored_best,
        "train_seconds": round(result.train_seconds, 1), "padding_efficiency": round(result.padding_efficiency, 4),
        "final_eval": kept_eval(result),
    }


def kept_eval(result: Any) -> dict[str, Any]:
    """The evaluation of the weights the run keeps: the best step's when fit restored it, else the last.

    >>> from types import SimpleNamespace as NS
    >>> h = [{"step": 10, "valid_loss": 2.0}, {"step": 20, "valid_loss": 3.0}]
    >>> kept_eval(NS(history=h, best_step=10, restored_best=True, final_metrics={"valid_loss": 3.0}))
    {'valid_loss': 2.0}
    """
    if getattr(result, "restored_best", False):
        for row in result.history:
            if row.get("step") == result.best_step and row.get("valid_loss") is not None:
                return {k: v for k, v in row.items() if k not in ("step", "epoch")}
    return result.final_metrics


def split_text(split: Any) -> str:
    """The split as the run card states it (leave-one-out uses no day windows).

    >>> from evtlm.recipe import SplitConfig
    >>> split_text(SplitConfig(method="leave_one_out"))
    'leave_one_out (the last event of each user is the test target, the one before it validation)'
    >>> split_text(SplitConfig(valid_days=2, test_days=3))
    'time (valid 2 days, test 3 days)'
    """
    if split.method == "leave_one_out":
        return "leave_one_out (the last event of each user is the test target, the one before it validation)"
    return f"{split.method} (valid {split.valid_days:g} days, test {split.test_days:g} days)"


def cap_lines(cap: int | None, report: dict[str, Any]) -> list[str]:
    """What ``task.examples_per_user`` dropped, as the run card states it (nothing when unset).

    >>> cap_lines(2, {"task": {"examples_per_user": {"dropped": {"train": 5, "valid": 0, "test": 0}}}})
    ['- task.examples_per_user: the latest 2 training examples per user kept (5 dropped); valid and test keep every example']
    """
    if cap is None:
        return []
    dropped = (report.get("task", {}).get("examples_per_user") or {}).get("dropped", {})
    line = f"- task.examples_per_user: the latest {cap} training examples per user kept ({dropped.get('train', 0)} dropped)"
    held_out = {s: n for s, n in dropped.items() if s != "train" and n}
    # the cap never applies to valid/test; should anything drop there, the card says how much
    return [line + ("; dropped from " + ", ".join(f"{s} {n}" for s, n in held_out.items()) if held_out
                    else "; valid and test keep every example")]


def model_card(recipe: Recipe, *, prepared: Any, base_info: Any, model_meta: dict[str, Any], training: dict[str, Any],
               command: str, metrics: dict[str, Any] | None = None) -> str:
    """The run's README.md: what was trained on what, from which base and why, and how well."""
    sizes = {split: len(ds) for split, ds in prepared.datasets.items()}
    labels = list(prepared.label_space)
    shown = ", ".join(repr(x) for x in labels[:10]) + (f" … ({len(labels)} in all)" if len(labels) > 10 else "")
    data = recipe.data
    source = data.path or (f"preset {data.preset}" if data.preset else
                           f"embedded synthetic shop ({data.synthetic.users} users, seed {data.synthetic.seed})")
    adapter = (f"LoRA r={recipe.lora.r}, alpha={recipe.lora.alpha}, dropout={recipe.lora.dropout}, "
               f"targets {', '.join(recipe.lora.target_modules or ['the architecture default'])}" if model_meta["format"] == "adapter" else "full fine-tuning (all weights)")
    if model_meta["format"] == "model" and recipe.lora.enabled:
        adapter += " — the base was built from scratch (lora.full_finetune_scratch)"
    lines = [
        f"# {recipe.name or 'evtlm run'}",
        "",
        recipe.description or "",
        "",
        "## Task",
        f"- `{recipe.task.name}`" + (f" (level {recipe.task.level}, horizon {recipe.task.horizon_days:g} days)" if recipe.task.name == "purchase" else ""),
        f"- label space: {shown}",
        f"- split: {split_text(recipe.split)}",
        f"- formulation: {recipe.task.formulation}" + (" (every target of a window read in one pass; evtlm.data.stream)"
                                                         if recipe.task.formulation == "stream" else " (one prompt per target)"),
        "",
        "## Data",
        f"- source: {source}",
        "- examples: " + ", ".join(f"{k} {v}" for k, v in sizes.items()),
        *cap_lines(recipe.task.examples_per_user, prepared.report),
        "- details: `data_report.json`",
        "",
        "## Model",
        f"- base used: **{base_info.used}** ({base_info.kind})",
        f"- why: {base_info.reason}",
        f"- parameters: {base_info.n_params:,}; adaptation: {adapter}" + ("; item tokens on" if recipe.model.item_tokens else ""),
        f"- saved as `{model_meta['format']}/`" + (" on top of `base/`" if model_meta.get("base") == "base" else ""),
        "",
        "## Training",
    ]
    if training:
        lines += [
            f"- {training['steps']} optimizer steps in {training['train_seconds']} s (batch {recipe.train.batch_size} x accumulation "
            f"{recipe.train.grad_accum}, lr {recipe.train.lr:g}, {recipe.train.schedule} schedule, {recipe.train.batching} batches, "
            f"padding efficiency {training['padding_efficiency']:.1%})",
            f"- best {training['metric_for_best']}: {training['best_metric']} at step {training['best_step']}"
            + (" (early stopping)" if training["stopped_early"] else ""),
            "- curves: `learning_curve.png`, `train_log.csv`, `tensorboard/`",
        ]
    lines += ["", "## Metrics"]
    final = (metrics or {}) or (training or {}).get("final_eval") or {}
    if final:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in final.items()]
        if not metrics:
            lines.append("\n(validation numbers of the kept weights"
                         + (f", step {training['best_step']}" if training.get("restored_best") else "")
                         + "; `report.md` holds the test-set evaluation with baselines once run)")
    else:
        lines.append("not evaluated yet")
    lines += ["", "## Reproduce", "```", command, "```", ""]
    return "\n".join(lines)
