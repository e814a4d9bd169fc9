"""The `evtlm` command line: thin subcommands over the pipeline stages.

Each module in this package owns one group of subcommands and exposes
``register(subparsers) -> None``, which adds its parsers and sets ``func`` on each to a
callable ``(args: argparse.Namespace) -> int | None``. `main.py` discovers the modules, so a new
command never edits a shared file. Heavy imports (torch, transformers) stay inside the ``func``
bodies so that ``evtlm --help`` answers at once.
"""
