"""``evtlm predict --run DIR --history FILE [--out preds.jsonl|.csv] [--top-k K] [--batch-size B]``.

One record per user of the history file, from the run directory alone (see `evtlm.predict.batch`):
purchase P(yes), next-action probabilities, or the top-k items with scores; a user whose events
cannot form a prompt gets an error record instead of stopping the run.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict for every user of a history file with a fine-tuned run",
        description="Read a history file through the run's data mapping (or --preset), verbalize each user's "
        "events with the run's recipe, decode under the run's label space and write one record per user "
        "(JSONL, or CSV when --out ends in .csv).",
    )
    p.add_argument("--run", required=True, metavar="DIR", help="run directory written by `evtlm finetune`")
    p.add_argument("--history", required=True, metavar="FILE", help="event log with the users to predict for")
    p.add_argument("--preset", default=None, help="read the history file as this data preset (e.g. evtlm_shop, taobao)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="output .jsonl (default) or .csv (default: <history stem>.preds.jsonl beside the history)")
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="items per user, next_item (default decode.top_k)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B", help="prompts per forward pass (default decode.batch_size)")
    p.add_argument("--as-of", default=None, metavar="TIME",
                   help="predict as of this ISO time (UTC if no zone), ignoring later events (default: after the last event)")
    p.add_argument("--on-bad-rows", choices=["skip", "error"], default="skip",
                   help="skip (default): drop unreadable rows, count them, and give users left without events an "
                   "error record; error: stop at the first bad row")
    p.add_argument("--chunk-users", type=int, default=1024, metavar="N", help="users processed per chunk (memory bound)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evtlm.predict.batch import predict_file

    s = predict_file(args.run, args.history, args.out, preset=args.preset, top_k=args.top_k, batch_size=args.batch_size,
                     progress=not args.no_progress, on_bad_rows=args.on_bad_rows, as_of=args.as_of,
                     chunk_users=args.chunk_users)
    dropped = sum(s["dropped_rows"].values())
    print(f"wrote {s['out']}: {s['users']:,} users, {s['predicted']:,} predictions, {s['errors']:,} error records "
          f"(as of {s['as_of']}" + (f"; {dropped:,} rows dropped: {s['dropped_rows']}" if dropped else "") + ")")
    return 0
