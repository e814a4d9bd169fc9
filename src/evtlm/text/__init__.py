"""Stage 2, text: events -> sentences -> token ids.

Owns verbalization (`evtlm.text.verbalize`), laying a history out as token pieces
(`evtlm.text.encode`), the tokenizer (pretrained or a scratch BPE) and where a pretrained base
comes from (`evtlm.text.bases`). Reads the canonical events of `evtlm.ingest`; knows nothing of
tasks, splits or training.
"""
