"""``evtlm finetune RECIPE [key=value ...] [--resume]``: the whole training run, end to end.

prepare data -> tokenizer -> base model (prints which one and why) -> LoRA -> fit -> save ->
run directory (see `evtlm.train.run_dir`) -> evaluation. Runs the same way as one process or under
``accelerate launch`` (``make finetune``); files are written by the main process only.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a model on a recipe and write a self-contained run directory",
        description="Prepare the data, load (or pretrain from scratch) the base model, train LoRA (or all weights) "
        "with accelerate, and write runs/<name>/. Multi-GPU: `make finetune NUM_GPUS=N` or `accelerate launch -m "
        "evtlm.cli.main finetune ...`.",
    )
    p.add_argument("recipe", help="recipe YAML (e.g. recipes/purchase.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="recipe overrides, e.g. train.epochs=1")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs still go to train_log.csv)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from evtlm.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    command = " ".join(["evtlm", "finetune", shlex.quote(str(args.recipe)), *map(shlex.quote, args.overrides)])
    finetune(recipe, resume=args.resume, command=command, progress=not args.no_progress)
    return 0


def finetune(recipe: Any, *, resume: bool = False, command: str | None = None, progress: bool = True,
             cache_dir: str | Path | None = None) -> Path:
    """Run a recipe end to end and return its run directory (usable from notebooks too)."""
    from evtlm.data.prepare import prepare
    from evtlm.errors import TaskError
    from evtlm.train.modeling import apply_lora, item_token_ids, load_base
    from evtlm.fsio import writing
    from evtlm.train.run_dir import prepare_run_dir, resolve_run_dir, save_model, write_run_files
    from evtlm.train.fit import distributed_state, fit

    from evtlm.data.prepare import text_recipe

    recipe = text_recipe(recipe)  # task-dependent defaults resolved (formulation, item tokens): the run dir stores these
    if recipe.train.threads is not None:
        import torch

        torch.set_num_threads(recipe.train.threads)
    state = distributed_state()  # rank info under `accelerate launch`; one process otherwise
    say = state.print
    where = "writing the run directory (output.dir / output.name)"  # names the path when a write fails without one
    with writing(resolve_run_dir(recipe), where):
        run_dir = prepare_run_dir(recipe, resume=resume, is_main=state.is_main_process)
    state.wait_for_everyone()
    command = command or f"evtlm finetune <recipe> (name {recipe.name})"

    # 1. data and tokenizer: the main process first, so caches are built once and then read
    with state.main_process_first():
        if recipe.data.by_shard:  # tokenized shards: this process trains on its own (evtlm.data.shard_prepare)
            from evtlm.data.shard_prepare import prepare_shards

            sharded = prepare_shards(recipe, progress=progress)
            prepared = sharded.prepared(recipe, ranks=(state.process_index, state.num_processes))
        else:
            prepared = prepare(recipe, progress=progress)
    tokenizer = prepared.tokenizer
    sizes = ", ".join(f"{k} {len(v)}" for k, v in prepared.datasets.items())
    say(f"data: {sizes} examples; label space {len(prepared.label_space)}"
        + (f"; {sharded.shards} tokenized shards, training on {len(sharded.mine((state.process_index, state.num_processes)))}"
           " of them per process" if recipe.data.by_shard else ""))

    # 2. base model (every process: scratch pretraining is itself a distributed fit)
    model, base_info = load_base(recipe.model, tokenizer, pretrain_texts=getattr(prepared, "train_texts", None),
                                 cache_dir=cache_dir, progress=progress, seed=recipe.train.seed)
    say(f"base: {base_info.used} — {base_info.reason}")
    if recipe.lora.target_modules is None:  # the architecture's own (evtlm.train.modeling.lora_targets), kept in the run's recipe
        from evtlm.train.modeling import lora_targets

        recipe = recipe.model_copy(update={"lora": recipe.lora.model_copy(update={"target_modules": lora_targets(model)})})

    # 3. adapter (item tokens: their embedding rows train with it)
    token_ids = None
    if recipe.model.item_tokens:
        token_ids = item_token_ids(tokenizer)
        if not token_ids:
            raise TaskError("model.item_tokens is set but the tokenizer has no <item_…> tokens", where="model.item_tokens",
                            fix="the data stage adds them (evtlm.train.modeling.add_item_tokens); check the task renders items as tokens")
    # streams: the training split of every shard, not only this process's, opened once: the item
    # rows, the pair memory and the feature scale are the same on every process
    train_split = None
    if recipe.task.formulation == "stream":
        train_split = sharded.dataset("train") if recipe.data.by_shard else prepared.datasets["train"]
    if recipe.model.item_init == "transitions":  # before the adapter: peft's trainable tokens start from these rows
        from evtlm.train.item_init import init_item_rows
        from evtlm.train.stream_model import answer_token_ids

        written = init_item_rows(model, answer_token_ids(tokenizer, prepared.label_space), train_split, seed=recipe.train.seed)
        say(f"item rows: {written:,} of {len(prepared.label_space):,} start from the training transitions' SVD "
            "(model.item_init=transitions)")
    lora_cfg = recipe.lora
    if base_info.kind == "scratch" and lora_cfg.enabled and lora_cfg.full_finetune_scratch:
        lora_cfg = lora_cfg.model_copy(update={"enabled": False})
        say("adaptation: full fine-tuning of the scratch base (lora.full_finetune_scratch=true)")
    # the adapter's random init (and the stream head's below) from the recipe's seed: what ran
    # before (a cached base or a pretraining one, the data stage) must not change the draws
    from accelerate.utils import set_seed

    set_seed(recipe.train.seed)
    model = apply_lora(model, lora_cfg, trainable_token_ids=token_ids)
    if recipe.task.formulation == "stream":  # every target of a window read in one pass (evtlm.train.stream_model)
        from evtlm.data.stream import target_feature_width
        from evtlm.train.stream_model import StreamLM, answer_token_ids

        # per-target features (tgt_feat): purchase cutoffs' RFM, next_action the gbt's own inputs
        width = target_feature_width(recipe.task.name) if recipe.model.history_features else 0
        pairs = 0
        if recipe.model.pair_memory:  # which (last item, answer) pairs the training targets hold: the memory's rows
            from evtlm.train.item_init import pair_index, transition_pairs

            pairs = pair_index(*transition_pairs(train_split), n_items=len(prepared.label_space))
        model = StreamLM(model, answer_token_ids(tokenizer, prepared.label_space), copy=bool(recipe.model.copy_path),
                         negatives=recipe.train.negatives if recipe.task.name == "next_item" else None,
                         features=bool(recipe.model.history_features) and recipe.task.name == "next_action",
                         target_features=width,
                         explore_loss=recipe.model.explore_loss, markov=recipe.model.markov_path, pairs=pairs,
                         feature_bins=recipe.model.feature_bins if width else 0)
        model.fit_feature_scale(train_split)
        say(f"formulation: stream (targets read in one pass per window); copy path {'on' if model.copy else 'off'}; "
            f"history features {'on' if model.features or model.target_features else 'off'}"
            + ("; markov path on" if model.markov else "")
            + (f"; pair memory over {model.pair_weight.numel():,} training pairs" if model.pair_memory else ""))
    else:
        say("formulation: example (one prompt per target)")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"training {trainable:,} of {sum(p.numel() for p in model.parameters()):,} parameters")

    # 4. the loop; the task's own metric drives best-model selection once evtlm.evaluate.harness offers it
    evaluate_fn, metric, greater = _task_metric(recipe, prepared)
    with writing(run_dir, where):  # checkpoints, logs, the best weights
        result = fit(model, prepared.datasets, recipe.train, run_dir, evaluate_fn=evaluate_fn, pad_id=tokenizer.pad_token_id,
                     metric_for_best=metric, greater_is_better=greater, resume=resume, progress=progress,
                     train_is_per_process=recipe.data.by_shard)

    # 5. the run directory (main process only); run.json last: until then it is not a finished run
    if state.is_main_process:
        from accelerate.utils import extract_model_from_parallel

        with writing(run_dir, where):
            meta = save_model(extract_model_from_parallel(model), tokenizer, run_dir, base_info)
            write_run_files(run_dir, recipe, prepared=prepared, base_info=base_info,
                            tokenizer_info=getattr(prepared, "tokenizer_info", None), model_meta=meta,
                            fit_result=result, command=command)
    state.wait_for_everyone()

    # 6. evaluation on the held-out split with baselines (evtlm.evaluate.harness) — call point
    _evaluate_run(run_dir, recipe, prepared, model, state, progress=progress)
    say(f"run directory: {run_dir}")
    return run_dir


def _task_metric(recipe: Any, prepared: Any):
    """(evaluate_fn, metric_for_best, greater_is_better): the task's own metric (evtlm.evaluate.harness)."""
    from evtlm.evaluate import harness as ev

    return ev.make_evaluate_fn(recipe, prepared)


def _evaluate_run(run_dir: Path, recipe: Any, prepared: Any, model: Any, state: Any, progress: bool = True) -> None:
    """Final evaluation (metrics.json, report.md, plots) with every baseline: the model's scoring
    shared by every process, the baselines and the report on the main one."""
    from accelerate.utils import extract_model_from_parallel

    from evtlm.evaluate import harness as ev

    ev.evaluate_run(run_dir, recipe=recipe, prepared=prepared, model=extract_model_from_parallel(model),
                    progress=progress, write=state.is_main_process, follower=not state.is_main_process)
    state.wait_for_everyone()
