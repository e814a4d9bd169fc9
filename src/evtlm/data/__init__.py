"""Stage 4, data: tasks' examples -> tokenized datasets, cached.

Owns `prepare` (the single-process path, `evtlm.data.prepare`), the sharded path for logs
that do not fit in memory (`evtlm.data.shard_prepare`), the dataset cache, the stream windows
(`evtlm.data.stream`) and the history features trees and the model both read
(`evtlm.data.history`). Reads ingest, text and tasks; never imports a model or a metric.
"""
