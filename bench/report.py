"""The benchmark summary: ``latest.json`` and ``latest.md`` from every ``<name>.json`` result.

Only files written by `bench.common.write_result` count (they have ``rows``); anything else in
``bench/results/`` (e.g. ``decode_speed.json`` written by ``bench/decode_speed.py`` on its own)
is left alone. Benchmarks appear in a fixed order, then any others by name.

>>> fmt(61234.5), fmt(0.91234), fmt(None), fmt(True)
('61,234', '0.912', '—', 'yes')
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ORDER = ["prepare_speed", "train_speed", "predict_speed", "stream_speed", "quality"]


def _names_unit(figure: str, unit: str) -> bool:
    """Whether ``unit`` stands in ``figure`` as a word of its own.

    >>> _names_unit("peak RSS at 99M events (GB)", "GB"), _names_unit("train: seconds from launch", "s")
    (True, False)
    """
    return re.search(rf"(?<![\w/]){re.escape(unit)}(?![\w/])", figure) is not None


def fmt(value: Any) -> str:
    """Numbers for a table: thousands separators for big ones, 3 significant-ish digits else."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return str(value)


def load_results(out_dir: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(out_dir.glob("*.json")):
        if path.name == "latest.json":
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "rows" in data and "name" in data:
            found.append(data)
    rank = {n: i for i, n in enumerate(ORDER)}
    return sorted(found, key=lambda d: (rank.get(d["name"], len(ORDER)), d["name"]))


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["# evtlm benchmarks", "",
             "Every figure is measured next to its reference in the same run, on the machine named under each "
             "table; compare the ratios, not the absolute times. How each is measured: `bench/README.md`.", ""]
    for res in results:
        m = res.get("machine", {})
        lines += [f"## {res.get('title', res['name'])}", "",
                  f"_{m.get('date', '?')}, {m.get('cpus', '?')} CPUs ({m.get('device', 'cpu')}), "
                  f"load {m.get('load_avg_1m', '?')}, commit {m.get('git_commit') or '?'}_", "",
                  "| figure | evtlm | reference | ratio | target | verdict | note |",
                  "|---|---:|---:|---:|---|:-:|---|"]
        for r in res["rows"]:
            # the unit, unless the figure's name already says it ("peak RSS (GB)", "events/s at ...")
            unit = f" {r['unit']}" if r.get("unit") and not _names_unit(r["figure"], r["unit"]) else ""
            ratio = "—" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
            lines.append(f"| {r['figure']}{unit} | {fmt(r.get('evtlm'))} | {fmt(r.get('reference'))} | {ratio} | "
                         f"{r.get('target', '')} | {_verdict(r)} | {r.get('note', '')} |")
        notes = res.get("details", {}).get("notes")
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
        lines.append("")
    return "\n".join(lines)


def _verdict(r: dict[str, Any]) -> str:
    """met / short / tie (`bench.common.verdict`); results written before verdicts existed show yes/no.

    >>> _verdict({"met": False, "verdict": "tie"}), _verdict({"met": True}), _verdict({"met": None})
    ('tie', 'yes', '—')
    """
    return r.get("verdict") or fmt(r.get("met"))


def rebuild(out_dir: Path) -> None:
    results = load_results(out_dir)
    (out_dir / "latest.json").write_text(json.dumps({r["name"]: r for r in results}, indent=2, default=str) + "\n")
    (out_dir / "latest.md").write_text(markdown(results))


if __name__ == "__main__":
    from bench.common import RESULTS

    rebuild(RESULTS)
    print((RESULTS / "latest.md").read_text())
