"""Entry point of the `evtlm` console script, and its error boundary.

No command prints a traceback, whatever its input. Every failure is one line on stderr,
``error: <what>, <where>, <what to do>``, and an exit status:

- **2, a problem the user can fix**: an :class:`evtlm.errors.EvtlmError`; a recipe section that
  rejects the settings a command's flags give it (pydantic); a bad flag or flag value (argparse,
  whose usage block is replaced by the one line); an ``OSError`` (a missing or unreadable file, a
  directory that cannot be written, a full disk: `evtlm.fsio.os_error_message` names the path);
  a file that its parser cannot read (`input_error`: malformed CSV, JSON, YAML, Parquet, text in
  the wrong encoding).
- **1, a bug in evtlm**: anything else. The line names the exception and where its traceback was
  saved; ``EVTLM_DEBUG=1`` shows it on the terminal instead.
- **130**: Ctrl-C (a finetune run saves its checkpoint first); **141**: a closed output pipe
  (``evtlm validate-data log.csv | head -1``), the status a shell gives a process killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import NoReturn

from pydantic_core import ValidationError

from evtlm import __version__
from evtlm.errors import EvtlmError

EXIT_USER_ERROR = 2
EXIT_BUG = 1
EXIT_BROKEN_PIPE = 128 + 13  # 128 + SIGPIPE, as a shell reports `cat big | head -1`
DEBUG_ENV = "EVTLM_DEBUG"  # set to 1: bugs keep their traceback on the terminal


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: <message>, <command>, see `<command> --help```.

    argparse prints its usage block and then the error; the usage is one ``--help`` away, and the
    one-line form is what every other failure prints. Subcommand parsers inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"error: {message}, {self.prog}, see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``, letting recipe overrides sit on either side of a flag.

    argparse ends a ``nargs="*"`` positional at the first flag, so ``evtlm finetune r.yaml
    --no-progress train.epochs=1`` would reject ``train.epochs=1``. ``parse_intermixed_args`` would
    mend that but refuses subparsers, so leftover ``key=value`` words join the overrides here, in
    the order they were typed; anything else left over is the usual usage error.
    """
    args, extras = parser.parse_known_args(argv)
    if extras:
        overridable = isinstance(getattr(args, "overrides", None), list)
        if not overridable or any(word.startswith("-") or "=" not in word for word in extras):
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        args.overrides = [*args.overrides, *extras]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status (see the module doc)."""
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exit_:  # --help, --version, or a one-line usage error
        return exit_.code if isinstance(exit_.code, int) else EXIT_USER_ERROR
    from evtlm.fsio import library_bars_off

    try:
        # transformers' own bars ("Loading weights", "Writing model shards") come from local reads
        # and writes of small models: noise around evtlm's progress and around a one-line error.
        # Hub downloads keep theirs (huggingface_hub's bars are separate)
        with library_bars_off():
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the boundary: one line, never a traceback
        line, code = describe(err, args.command)
        if code == EXIT_BUG and os.environ.get(DEBUG_ENV):
            raise
        print(f"error: {line}", file=sys.stderr)
        return code
    return int(code or 0)


def describe(err: Exception, command: str) -> tuple[str, int]:
    """The one line (without ``error: ``) and the exit status for an exception a command raised."""
    if isinstance(err, EvtlmError):
        return str(err), EXIT_USER_ERROR
    if isinstance(err, ValidationError):  # settings from flags built into a recipe section (--timezone, --preset)
        from evtlm.recipe import problem_lines

        return f"{'; '.join(problem_lines(err))}, evtlm {command}, see `evtlm {command} --help`", EXIT_USER_ERROR
    if isinstance(err, OSError):
        from evtlm.fsio import os_error_message

        return os_error_message(err), EXIT_USER_ERROR
    bad_input = input_error(err)
    if bad_input is not None:
        return f"{bad_input}, evtlm {command}, check that the file is the format the command (or its preset) expects", \
            EXIT_USER_ERROR
    where = save_traceback(err)
    return (f"internal error in evtlm {command}: {type(err).__name__}: {_first_line(err)} (a bug in evtlm, not in your "
            f"input: please report it{f' with the traceback saved in {where}' if where else ''}; {DEBUG_ENV}=1 shows it "
            "here)"), EXIT_BUG


def input_error(err: Exception) -> str | None:
    """What a parser said about a file it could not read, or None for an exception of another kind.

    These come from third-party readers (pandas, pyarrow, json, yaml, codecs) handed a file
    that is not what it should be: the user's input, not a bug.
    """
    import json

    kinds: list[type] = [UnicodeError, json.JSONDecodeError]
    try:
        import pandas.errors as pd_errors

        kinds += [pd_errors.ParserError, pd_errors.EmptyDataError]
    except ImportError:
        pass
    try:
        import pyarrow

        kinds.append(pyarrow.ArrowInvalid)
    except ImportError:
        pass
    try:
        import yaml

        kinds.append(yaml.YAMLError)
    except ImportError:
        pass
    if isinstance(err, tuple(kinds)):
        return f"cannot read the input: {type(err).__name__}: {_first_line(err)}"
    return None


def save_traceback(err: Exception) -> str | None:
    """Write the traceback of ``err`` to a temporary file; its path (None if that fails too)."""
    import tempfile
    import traceback

    try:
        fd, path = tempfile.mkstemp(prefix="evtlm-traceback-", suffix=".txt")
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(traceback.format_exception(type(err), err, err.__traceback__)))
        return path
    except OSError:
        return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else "(no message)"


if __name__ == "__main__":  # `python -m evtlm.cli.main` (used by `accelerate launch -m`)
    sys.exit(main())
