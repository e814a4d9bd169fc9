"""Entry point of the `evtlm` console script.

Errors a user can cause (:class:`evtlm.errors.EvtlmError`, and a recipe section that rejects
the settings a command's flags give it) print one line, ``error: <what>, <where>, <what to do>``,
and exit with code 2; anything else is a bug and keeps its traceback. Ctrl-C exits 130 without a traceback (a finetune run saves its checkpoint first).
A closed output pipe (``evtlm validate-data log.csv | head -1``) ends the command quietly with
141, the status a shell gives a process killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from pydantic_core import ValidationError

from evtlm import __version__
from evtlm.errors import EvtlmError

EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 128 + 13  # 128 + SIGPIPE, as a shell reports `cat big | head -1`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evtlm",
        description="E-commerce event logs as text: verbalize, fine-tune, predict, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"evtlm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    import evtlm.cli as cli_pkg

    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if info.name == "main" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"evtlm.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe surfaces here, inside the handler, not at exit
    except BrokenPipeError:
        # the reader (`head`) is gone: the standard recipe (Python docs, "Note on SIGPIPE") points
        # stdout at devnull so the interpreter's own flush at exit cannot raise a second time
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a file descriptor (captured in tests)
            pass
        return EXIT_BROKEN_PIPE
    except EvtlmError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ValidationError as err:  # settings from flags built into a recipe section (--timezone, --preset)
        from evtlm.recipe import problem_lines

        print(f"error: {'; '.join(problem_lines(err))}, evtlm {args.command}, see `evtlm {args.command} --help`",
              file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # `python -m evtlm.cli.main` (used by `accelerate launch -m`)
    sys.exit(main())
