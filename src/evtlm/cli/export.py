"""``evtlm export --run DIR --out DIR [--overwrite]``: a run as a plain Hugging Face model directory
(LoRA merged, tokenizer with its item tokens, label space, model card; see `evtlm.predict.export`)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="write a run as a plain Hugging Face model directory (LoRA merged)",
        description="Merge the run's LoRA adapter (and item-token rows) into the base weights and write a directory "
        "that AutoModelForCausalLM.from_pretrained loads without evtlm or peft: model (safetensors), tokenizer, "
        "label_space.json and a README.md model card. Stream runs also get their evtlm read-out beside the model, "
        "and the card says their scores need evtlm.")
    p.add_argument("--run", required=True, metavar="DIR", help="run directory written by `evtlm finetune`")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write (new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it holds files")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from evtlm.predict.export import export_run

    out = export_run(args.run, args.out, overwrite=args.overwrite)
    print(f"exported {args.run} to {out} (load it with AutoModelForCausalLM.from_pretrained; see {out}/README.md)")
    return 0
