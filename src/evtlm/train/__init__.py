"""Stage 5, train: the base model, the stream read-out, the one training loop, the run directory.

Owns loading or pretraining the base (`evtlm.train.modeling`), LoRA, `StreamLM`
(`evtlm.train.stream_model`), batching, `fit` (`evtlm.train.fit`: the explicit loop),
checkpoints and logs, scoring shared across processes, and the self-describing run directory
(`evtlm.train.run_dir`). Reads prepared datasets; never computes a ranking metric or a baseline.
"""
