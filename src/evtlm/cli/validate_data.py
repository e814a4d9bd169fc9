"""`evtlm validate-data`: read a log through a preset or a column mapping and print its report.

    evtlm validate-data ../shared/data/taobao/UserBehavior_head84k.csv --preset taobao
    evtlm validate-data events.csv --user-col uid --item-col sku --action-col type \\
        --time-col ts --map pv=view --map buy=purchase --on-bad-rows skip --json report.json
    evtlm validate-data searches.csv --item-col '' --constant-action view   # a log without items

Only the flags given on the command line are set in the `DataConfig`, so a preset's own values
stay in force under them (exactly like a recipe's explicit fields).

>>> print(format_report(DataReport(source="x.csv", rows_read=3, rows_kept=2, users=1,
...       events_per_action={"view": 2}, dropped={"empty user id": 1},
...       dropped_rows={"empty user id": [2]})).splitlines()[5])
  dropped rows         1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from evtlm.errors import DataError
from evtlm.ingest.events import DataReport
from evtlm.timeunits import SECONDS_PER_DAY

_REQUIRED_COLUMNS = {"user": "user ids", "timestamp": "event times"}
_DELIMITER_WORDS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate-data",
        help="read an event log and print a data report (counts, time span, bad rows by reason)",
        description="Read an event log through a preset or a column mapping and report what was read, "
        "kept and dropped (by reason, with the first 1-based data row numbers).",
    )
    p.add_argument("path", help="the event log (CSV/TSV/Parquet/JSONL, plain or .gz)")
    p.add_argument("--preset", help="a known public format: taobao, online_retail, yoochoose, diginetica, "
                   "retailrocket, rees46")
    p.add_argument("--option", action="append", default=[], metavar="K=V", help="a preset option (repeatable)")
    g = p.add_argument_group("file layout")
    g.add_argument("--format", choices=["auto", "csv", "tsv", "parquet", "jsonl"])
    g.add_argument("--delimiter", help="field separator (',', ';', 'tab', …); sniffed when absent")
    g.add_argument("--encoding", help="text encoding of a CSV/TSV (default utf-8; e.g. latin-1)")
    g.add_argument("--no-header", action="store_true", help="the file has no header line (give --column-names)")
    g.add_argument("--column-names", help="comma-separated names for a header-less file")
    g = p.add_argument_group("column mapping")
    for flag, key in [("--user-col", "user"), ("--item-col", "item"), ("--action-col", "action"),
                      ("--time-col", "timestamp"), ("--session-col", "session")]:
        none = "" if key in _REQUIRED_COLUMNS else f"; '' for a log without one (data.columns.{key}: null)"
        g.add_argument(flag, dest=f"col_{key}", metavar="COLUMN", help=f"the raw column of the {key}{none}")
    g.add_argument("--extra", action="append", default=[], metavar="NAME=COLUMN", help="e.g. price=UnitPrice")
    g = p.add_argument_group("values")
    g.add_argument("--time-unit", choices=["auto", "s", "ms", "us", "ns", "iso"])
    g.add_argument("--time-format", help="strptime format of string timestamps")
    g.add_argument("--timezone", help="zone of naive timestamps (default UTC)")
    g.add_argument("--map", action="append", default=[], metavar="RAW=ACTION", help="raw action -> canonical verb")
    g.add_argument("--constant-action", help="the action of every row (a log without an action column)")
    g.add_argument("--drop-action", action="append", default=[], metavar="RAW", help="raw action value to drop")
    g = p.add_argument_group("filters")
    g.add_argument("--start", help="keep events at or after (ISO)")
    g.add_argument("--end", help="keep events before (ISO)")
    g.add_argument("--session-gap", type=float, help="minutes of inactivity that start a new session")
    g.add_argument("--max-users", type=int)
    g.add_argument("--on-bad-rows", choices=["error", "skip"], help="error (default): stop at the first bad "
                   "rows; skip: drop and count them")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    p.set_defaults(func=run)


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DataError(f"{flag} {item!r} is not KEY=VALUE", where=flag, fix=f"write it as {flag} name=value")
        out[key.strip()] = value.strip()
    return out


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The `DataConfig` fields the command line set (and only those)."""
    d: dict[str, Any] = {"path": args.path}
    if args.preset:
        d["preset"] = args.preset
    if args.option:
        d["options"] = _pairs(args.option, "--option")
    if args.format:
        d["format"] = args.format
    if args.delimiter:
        d["delimiter"] = _DELIMITER_WORDS.get(args.delimiter.lower(), args.delimiter)
    if args.encoding:
        d["encoding"] = args.encoding
    if args.no_header:
        d["has_header"] = False
    if args.column_names:
        d["column_names"] = [c.strip() for c in args.column_names.split(",")]
    columns: dict[str, Any] = {}
    for key in ("user", "item", "action", "timestamp", "session"):
        value = getattr(args, f"col_{key}")
        if value is None:
            continue
        if not value.strip():
            # `--item-col ''` is `data.columns.item: null`: a log without items (or actions, or
            # session ids); user and time are what an event is, so they cannot be absent
            if key in _REQUIRED_COLUMNS:
                raise DataError(f"--{key if key != 'timestamp' else 'time'}-col cannot be empty",
                                where="evtlm validate-data",
                                fix=f"name the column holding the {_REQUIRED_COLUMNS[key]}")
            value = None
        columns[key] = value
    if args.extra:
        columns["extra"] = _pairs(args.extra, "--extra")
    if columns:
        d["columns"] = columns
    ts = {k: v for k, v in (("unit", args.time_unit), ("format", args.time_format), ("timezone", args.timezone)) if v}
    if ts:
        d["timestamp"] = ts
    if args.map:
        d["actions"] = _pairs(args.map, "--map")
    for key, value in (("constant_action", args.constant_action), ("start", args.start), ("end", args.end),
                       ("session_gap_minutes", args.session_gap), ("max_users", args.max_users),
                       ("on_bad_rows", args.on_bad_rows)):
        if value is not None:
            d[key] = value
    if args.drop_action:
        d["drop_actions"] = args.drop_action
    return d


def _n(x: int) -> str:
    return f"{x:,}"


def format_report(r: DataReport) -> str:
    """The report as aligned text lines (what `validate-data` prints)."""
    lines = [f"data report: {r.source}"]
    row = lambda label, value: lines.append(f"  {label:<20} {value}")  # noqa: E731
    row("rows read", _n(r.rows_read))
    if r.files:  # a log in several files: row numbers below run on from one file to the next
        row("files", f"{len(r.files)} (data rows of each; row numbers run on across them)")
        shown = r.files if len(r.files) <= 8 else r.files[:4] + [None] + r.files[-3:]
        for f in shown:
            lines.append("    …" if f is None else f"    {f['path']}: {_n(f['rows'])} rows from row {_n(f['first_row'])}")
    row("rows kept", _n(r.rows_kept))
    row("duplicates removed", _n(r.duplicates_removed))
    row("users", _n(r.users))
    row("dropped rows", _n(sum(r.dropped.values())))
    for reason, n in sorted(r.dropped.items(), key=lambda kv: -kv[1]):
        rows = ", ".join(map(str, r.dropped_rows.get(reason, [])))
        lines.append(f"    {reason}: {_n(n)} (first data rows: {rows}{' …' if n > 5 else ''})")
    row("items", _n(r.items))
    row("sessions", _n(r.sessions))
    if r.time_start:
        import pandas as pd

        days = (pd.Timestamp(r.time_end) - pd.Timestamp(r.time_start)).total_seconds() / SECONDS_PER_DAY
        row("time span", f"{r.time_start} .. {r.time_end} ({days:.1f} days, UTC)")
    if r.raw_actions:
        raw = " · ".join(f"{k or '(empty)'} {_n(v)}" for k, v in sorted(r.raw_actions.items(), key=lambda kv: -kv[1]))
        row("raw action values", f"{len(r.raw_actions)} distinct: {raw}")
    row("events per action", " · ".join(f"{k} {_n(v)}" for k, v in r.events_per_action.items()))
    if r.catalog_items:
        row("catalog items", _n(r.catalog_items))
    for note in r.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from evtlm.ingest.presets import load_event_log
    from evtlm.recipe import DataConfig

    fields = config_from_args(args)
    try:
        cfg = DataConfig.model_validate(fields)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise DataError(f"invalid data settings: {problems}", where="evtlm validate-data",
                        fix="see `evtlm validate-data --help`") from None
    log = load_event_log(cfg)
    print(format_report(log.report))
    if args.json:
        Path(args.json).write_text(json.dumps(log.report.to_dict(), indent=2) + "\n")
        print(f"report written to {args.json}")
    return 0
