"""The README's results table, generated from ``bench/results/quality.json`` (never pasted by hand).

``make bench-quality`` rewrites the block between the two markers below; ``tests/test_readme.py``
fails when the README and the benchmark output disagree.

    python -m bench.readme_results --write     # after a quality run (bench.quality does it itself)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- results:begin (bench/readme_results.py) -->", "<!-- results:end -->"


def _cell(v: Any) -> str:
    return "—" if v is None else f"{v:.4f}"


def render(quality: dict[str, Any]) -> str:
    """Markdown: per recipe, every method's headline metrics on the same examples, and the verdicts."""
    from bench.quality import RECIPES

    m = quality.get("machine", {})
    commits = " and ".join(m["merged_from"]) if m.get("merged_from") else (m.get("git_commit") or "?")
    lines = [f"_From `make bench-quality` ({m.get('date', '?')}, {m.get('cpus', '?')} CPUs, commit{'s' if m.get('merged_from') else ''} "
             f"{commits}); every method on the same test examples (N of the split below); the best per column in bold._", ""]
    if quality.get("details", {}).get("notes_extra"):  # e.g. why wall times are longer than an idle machine's
        lines += [f"_{quality['details']['notes_extra']}._", ""]
    recipes = quality.get("details", {}).get("recipes", {})
    verdicts = {r["figure"]: r for r in quality.get("rows", [])}
    for name, spec in RECIPES.items():
        res = recipes.get(name)
        if not res or "methods" not in res:
            continue
        metrics = [k for k, _ in spec[1]]
        extra = (["accuracy", "log_loss"] if name.endswith("next_action")
                 else ["log_loss", "ece", "p_std"] if name.endswith("purchase") else [])  # p_std: spread of P(yes)
        cols = metrics + extra
        methods = res["methods"]
        best = {c: max((v.get(c) for v in methods.values() if v.get(c) is not None), default=None) for c in metrics}
        lines += [f"**{name}** (`recipes/{name}.yaml`, N = {res['n']:,} of {res['n_split']:,}, "
                  f"{res.get('seconds', 0) / 60:.1f} min in all)", "",
                  "| method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
        for method, vals in methods.items():
            cells = [(f"**{_cell(vals.get(c))}**" if c in best and vals.get(c) is not None and vals.get(c) == best[c]
                      else _cell(vals.get(c))) for c in cols]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        for k, label in spec[1]:
            for shown in (label, f"{label} (model+gbt)"):  # the second: purchase recipes' stack against gbt
                v = verdicts.get(f"{name}: {shown}")
                if v:
                    se = next((part.strip() for part in v["note"].split(";") if part.strip().startswith("SE ")), None)
                    lines.append(f"\n{shown}: target {v['target']}; {v['note'].split(';')[0]}" + (f" ({se})." if se else "."))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def block(readme: str) -> str:
    """The README's current generated block (between the markers)."""
    if BEGIN not in readme or END not in readme:
        return ""
    return readme.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def write(readme_path: Path = REPO / "README.md", quality_path: Path = REPO / "bench" / "results" / "quality.json") -> None:
    text = readme_path.read_text()
    new = render(json.loads(quality_path.read_text()))
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    readme_path.write_text(head + BEGIN + "\n" + new + END + tail)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if args.write:
        write()
    else:
        print(render(json.loads((REPO / "bench" / "results" / "quality.json").read_text())))
