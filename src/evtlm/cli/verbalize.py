"""`evtlm verbalize`: preview a user's history as text, and what it costs in tokens.

    evtlm verbalize ../shared/data/taobao/UserBehavior_head84k.csv --preset taobao --user 1 \\
        --tokenizer ../shared/tokenizers/gpt2 --time relative

prints the user's text (``actor + pieces``, exactly what the data stage tokenizes) and, with a
tokenizer, the tokens per event of the chosen rendering: for this user and over the whole log
(a sample of `_SAMPLE_EVENTS` events for big logs), so every template's cost is visible before
training. A file written by `evtlm simulate` is read with its session ids, prices and catalog.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from evtlm.errors import DataError, ModelUnavailableError

_SAMPLE_EVENTS = 100_000


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verbalize",
        help="print a user's events as text and the tokens per event under a tokenizer",
        description="Read an event log (through a preset or as a canonical CSV such as `evtlm simulate` "
        "writes), print one user's history as the model will read it and, with --tokenizer, the "
        "tokens per event of the chosen rendering.",
    )
    p.add_argument("path", help="the event log")
    p.add_argument("--preset", help="a known public format (taobao, online_retail, …; see validate-data)")
    p.add_argument("--user", help="the user to show (default: the first user)")
    p.add_argument("--tokenizer", metavar="DIR_OR_HUB_ID", help="count tokens with this tokenizer "
                   "(a local directory, e.g. ../shared/tokenizers/gpt2)")
    p.add_argument("--item", choices=["id", "title", "template"], help="item rendering (default id)")
    p.add_argument("--item-template", help="template over catalog fields, e.g. '{title} ({category})'")
    p.add_argument("--time", choices=["none", "absolute", "relative"], help="time phrases (default relative)")
    p.add_argument("--timezone", help="zone of absolute times (default UTC), e.g. Asia/Shanghai")
    p.add_argument("--max-events", type=int, metavar="N", help="show only the user's latest N events "
                   "(the first one kept is written standalone, as a truncated history is)")
    p.set_defaults(func=run)


def data_config(path: str, preset: str | None):
    """A `DataConfig` for ``path``: the preset's, or the canonical columns of a simulated shop."""
    from evtlm.ingest.readers import detect_format, resolve_path, table_columns
    from evtlm.recipe import CatalogConfig, ColumnsConfig, DataConfig
    from evtlm.ingest.simulate import catalog_path_for

    if preset:
        return DataConfig(preset=preset, path=path)
    p = resolve_path(path, None, "PATH")
    names, _ = table_columns(p, detect_format(p), None, True, None)
    columns = ColumnsConfig(session="session_id" if "session_id" in names else None,
                            extra={"price": "price"} if "price" in names else {})
    catalog = catalog_path_for(p)
    return DataConfig(path=path, columns=columns,
                      catalog=CatalogConfig(path=str(catalog)) if catalog.is_file() else None)


def load_tokenizer(spec: str):
    """A local tokenizer directory (or a cached hub id); a one-line error with the fix otherwise."""
    from evtlm.recipe import ModelConfig
    from evtlm.text.tokenization import try_load_pretrained

    if spec.startswith(("/", ".", "~")) and not Path(spec).expanduser().exists():  # fail before importing transformers
        tok, why = None, f"no such directory: {spec}"
    else:
        tok, why = try_load_pretrained(ModelConfig(base=spec))
    if tok is None:
        raise ModelUnavailableError(f"cannot load the tokenizer {spec!r} ({why})", where="--tokenizer",
                                    fix="pass a directory holding tokenizer files, e.g. ../shared/tokenizers/gpt2")
    return tok


def tokens_per_piece(tokenizer, texts: list[str]) -> list[int]:
    """Token count of each text, tokenized on its own (as the data stage tokenizes pieces)."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from evtlm.errors import did_you_mean
    from evtlm.ingest.presets import load_event_log
    from evtlm.recipe import VerbalizeConfig
    from evtlm.text.verbalize import actor_text, verbalize_events

    if args.max_events is not None and args.max_events < 1:
        raise DataError(f"--max-events {args.max_events} must be at least 1", where="--max-events",
                        fix="give a positive number of events")
    overrides = {k: v for k, v in (("item", args.item), ("time", args.time), ("timezone", args.timezone),
                                   ("item_template", args.item_template)) if v is not None}
    cfg = VerbalizeConfig(**overrides)
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None  # fail fast, before reading
    log = load_event_log(data_config(args.path, args.preset))
    events = log.events
    if events.empty:
        raise DataError("the log holds no events", where=str(args.path), fix="check the file and its filters")
    user = args.user if args.user is not None else str(events["user_id"].iloc[0])
    mine = events[events["user_id"] == user]
    if mine.empty:
        sample = events["user_id"].drop_duplicates().head(10_000).tolist()
        raise DataError(f"user {user!r} not in the log ({events['user_id'].nunique():,} users)", where="--user",
                        fix=did_you_mean(user, sample))
    shown = mine.tail(args.max_events) if args.max_events else mine
    text = verbalize_events(shown, log.catalog, cfg)
    pieces = text.piece.tolist()
    if len(shown) < len(mine):  # a truncated history opens with the standalone form
        pieces[0] = text.standalone.iloc[0]
    actor = actor_text(shown["user_id"].iloc[:1], cfg).iloc[0]
    omitted = f" (latest {len(shown):,} of {len(mine):,} events)" if len(shown) < len(mine) else ""
    print(f"user {user}: {len(mine):,} events{omitted}; item={cfg.item}, time={cfg.time}")
    print(actor + "".join(pieces))
    if tokenizer is not None:
        counts = tokens_per_piece(tokenizer, pieces)
        actor_tokens = tokens_per_piece(tokenizer, [actor])[0]
        total = actor_tokens + sum(counts)
        print(f"tokens ({args.tokenizer}): {total:,} for this text = {actor_tokens} (actor) + {sum(counts):,} "
              f"over {len(counts):,} events, {np.mean(counts):.2f} per event")
        sample = events.head(_SAMPLE_EVENTS)  # whole users first: the log is grouped by user
        all_counts = tokens_per_piece(tokenizer, verbalize_events(sample, log.catalog, cfg).piece.tolist())
        scope = "all" if len(sample) == len(events) else f"the first {len(sample):,} of"
        print(f"tokens per event over {scope} {len(events):,} events: mean {np.mean(all_counts):.2f}, "
              f"total {int(np.sum(all_counts)):,}")
    return 0
