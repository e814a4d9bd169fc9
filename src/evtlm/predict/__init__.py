"""Stage 8, predict: a run directory applied to new histories, and exported.

Owns `evtlm predict` over a history file (`evtlm.predict.batch`) and exporting a run as a plain
Hugging Face directory (`evtlm.predict.export`). The most downstream stage: it may read every
other; nothing imports it but the CLI.
"""
