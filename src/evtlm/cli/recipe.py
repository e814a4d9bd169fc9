"""`evtlm validate RECIPE...` and `evtlm recipe show RECIPE [key.sub=value ...]`."""

from __future__ import annotations

import argparse
import sys

from evtlm.errors import EvtlmError, RecipeError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate",
        help="check recipe files (schema and settings that cannot work) before running anything",
        description="Load each recipe and report every problem, one per line with its dotted path: unknown keys, "
        "wrong types, and settings that cannot work (an unknown preset or time zone, a split the task cannot use, a "
        "model shape that does not fit). Nothing is read or trained. Exit 2 if any recipe fails.",
    )
    p.add_argument("recipes", nargs="+", metavar="RECIPE")
    p.set_defaults(func=_validate)

    show = subparsers.add_parser("recipe", help="inspect recipes").add_subparsers(dest="recipe_command", metavar="ACTION")
    show.required = True
    s = show.add_parser(
        "show",
        help="print the fully resolved recipe (defaults and preset filled in)",
        description="Print the recipe with every default written out and overrides applied.",
    )
    s.add_argument("recipe", metavar="RECIPE")
    s.add_argument("overrides", nargs="*", metavar="key.sub=value")
    s.set_defaults(func=_show)


def _validate(args: argparse.Namespace) -> int:
    from evtlm.recipe import load_recipe

    failed = 0
    for path in args.recipes:
        try:
            recipe = load_recipe(path)
        except RecipeError as err:
            failed += 1
            if not err.problems:  # a file that is not there, or not YAML
                print(f"error: {err}", file=sys.stderr)
                continue
            # one line per problem (field, value, what was expected) under a header naming the file
            noun = "problem" if len(err.problems) == 1 else "problems"
            print(f"error: {len(err.problems)} {noun} in the recipe {path} (one per line below; `evtlm recipe show` "
                  "prints every valid key with its default)", file=sys.stderr)
            for line in err.problems:
                print(f"  {line}", file=sys.stderr)
        except EvtlmError as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr)
        else:
            print(f"ok: {path} (task {recipe.task.name}, model {recipe.model.base})")
    return 2 if failed else 0


def _show(args: argparse.Namespace) -> int:
    from evtlm.recipe import dump_recipe, load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    try:  # show the data section with its preset merged in, as the run will see it
        from evtlm.ingest.presets import resolve_data_config
    except ImportError:
        pass
    else:
        recipe = recipe.model_copy(update={"data": resolve_data_config(recipe.data)})
    sys.stdout.write(dump_recipe(recipe))
    return 0
