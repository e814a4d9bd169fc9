"""The column check of every read: `check_columns`, every mapped column must exist in a file, all
the missing ones reported at once with hints (a close name, a first line that looks like data, how
to declare a column absent, a preset the columns match). It only checks names and raises; it must
not read files or rows (`evtlm.ingest.events`, `evtlm.ingest.item_catalog` call it).
"""

from __future__ import annotations

from evtlm.errors import DataError, closest


def check_columns(roles: dict[str, str], names: list[str], source: str, header: bool = True) -> None:
    """Every mapped column must exist; all the missing ones are reported at once, with hints."""
    if not names:
        return
    missing = {k: v for k, v in roles.items() if v not in names}
    if not missing:
        return
    parts = []
    for key, col in missing.items():
        near = closest(col, names)
        parts.append(f"{col!r} ({key}; " + (f"did you mean {near[0]!r}?)" if near else "no close match)"))
    fix = "set the mapping to one of the file's columns"
    looks_like_data = sum(n.replace(".", "", 1).lstrip("-").isdigit() for n in names) * 2 >= len(names)
    if header and looks_like_data:
        fix = ("the first line looks like data, not a header: set data.has_header: false and "
               "data.column_names (one name per field; validate-data: --no-header --column-names)")
    elif header:
        # (worded exactly as README's troubleshooting example, which tests/test_readme.py compares)
        fix += "; a file without a header line needs data.has_header: false and data.column_names"
    # a column the log may simply not have: say how to declare it absent (only the recipe key
    # was ever shown, so `--item-col ''` / `data.columns.item: null` stayed undiscoverable)
    absent = {"data.columns.item": "a log without items: data.columns.item: null (validate-data: --item-col '')",
              "data.columns.action": "a log without actions: data.columns.action: null and data.constant_action "
                                     "(validate-data: --action-col '' --constant-action view)",
              "data.columns.session": "no session column: data.columns.session: null (validate-data: --session-col '')"}
    if not (header and looks_like_data):  # (no header at all: absent columns are not the point)
        fix += "".join(f"; {absent[k]}" for k in missing if k in absent)
    from evtlm.ingest.presets import suggest_preset  # lazy: evtlm.ingest.presets imports this module

    preset = suggest_preset(names, header=header)
    if preset:
        fix = f"{preset}; or {fix}"
    raise DataError(f"{'column' if len(missing) == 1 else 'columns'} not found: {', '.join(parts)}",
                    where=f"{source} (columns: {', '.join(names[:40])})", fix=fix)
