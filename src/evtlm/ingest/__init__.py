"""Stage 1, ingest: raw files -> the canonical event table (`evtlm.ingest.events.EventLog`).

Owns reading (formats, sources, chunks, values), the column mapping and presets for public logs,
deduplication and sessions, the catalog, money (price x quantity), partitioning a log into
shards, the synthetic shop, and data provenance. Imports only `evtlm.recipe`, `evtlm.errors`
and the helpers beside them; never text, tasks, models or evaluation.
"""
