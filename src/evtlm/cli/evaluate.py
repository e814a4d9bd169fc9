"""``evtlm evaluate --run DIR [--split test|valid] [--max-examples N] [key.sub=value ...]``: model vs baselines.

Scores the run's model and every baseline of its task on the same examples, prints the table
(the same N on every row) and writes ``metrics.json``, ``report.md`` and plots into the run
directory (see `evtlm.evaluate.harness`). Overrides of the run's recipe (decode, eval and the data files'
places, `evtlm.decode.inference.RUN_OVERRIDES`) apply to this evaluation only and are stated in the report.
Works from any directory: the run names its data by absolute path and checks its fingerprint.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a run's model next to the baselines on the same examples",
        description="Evaluate a run directory written by `evtlm finetune`: the model and every baseline of its task "
        "(prior, popularity, transitions, repeat, SASRec, Markov, gradient-boosted trees, as they apply) on exactly "
        "the same examples. Writes metrics.json, report.md and plots into the run directory.",
    )
    p.add_argument("--run", required=True, metavar="DIR", help="run directory (e.g. runs/purchase)")
    p.add_argument("--split", choices=["test", "valid"], default=None, help="split to score (default: eval.split, test)")
    p.add_argument("--max-examples", type=int, default=None, metavar="N",
                   help="score a seeded sample of N examples (default: eval.max_examples, else all)")
    p.add_argument("--baselines", default=None, metavar="A,B",
                   help="comma-separated baselines to run (default: eval.baselines, else all that fit the task)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="overrides of the run's recipe for this evaluation, as for finetune: decode.*, eval.*, data.path, "
                   "data.catalog.path (e.g. decode.exclude_history_items=true, or data.path=NEW to read a moved log); "
                   "the report states them")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evtlm.errors import RecipeError
    from evtlm.evaluate.harness import evaluate_run
    from evtlm.decode.inference import load_run_recipe
    from evtlm.evaluate.report import reading, text_table

    if args.max_examples is not None and args.max_examples < 1:
        raise RecipeError(f"--max-examples {args.max_examples} must be at least 1", where="evtlm evaluate",
                          fix="give a positive number, or leave it out to score every example")
    recipe = load_run_recipe(args.run, args.overrides)
    split = args.split or recipe.eval.split
    names = [b.strip() for b in args.baselines.split(",") if b.strip()] if args.baselines else None
    result = evaluate_run(args.run, split=split, recipe=recipe, progress=not args.no_progress,
                          max_examples=args.max_examples, baselines=names, overrides=args.overrides)
    print(f"{result['task']} on the {split} split: N = {result['n']} examples for every method"
          + (f" (a seeded sample of {result['n_split']})" if result["sampled"] else ""))
    print(text_table(result))
    print()
    print(reading(result))
    print(f"wrote {', '.join(result.get('files', []))} in {args.run}")
    return 0
