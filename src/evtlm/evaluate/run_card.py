"""The run card: the evaluation section of a run directory's ``README.md`` (the reading and the
table of `evtlm.evaluate.report`, under `CARD_MARK`, replacing an earlier one). It edits that one
section of an existing card only: it never creates the card, and leaves ``metrics.json``,
``report.md`` and the plots to `evtlm.evaluate.harness` and `evtlm.evaluate.report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


CARD_MARK = "## Evaluation against baselines"


def _update_card(run_dir: Path, result: dict[str, Any]) -> None:
    """Put the evaluation table into the run's README.md (replacing an earlier one)."""
    from evtlm.evaluate.report import markdown_table, reading

    card = run_dir / "README.md"
    if not card.is_file():
        return
    text = card.read_text()
    head, _, rest = text.partition(CARD_MARK)
    tail = rest.partition("\n## ")[2] if rest else ""  # the section after ours, if any
    section = [CARD_MARK, "", reading(result), "", markdown_table(result), "", "Details: `report.md`, `metrics.json`.", ""]
    card.write_text(head.rstrip() + "\n\n" + "\n".join(section) + ("\n## " + tail if tail else ""))
