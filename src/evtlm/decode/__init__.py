"""Stage 6, decode: a trained model's answers, constrained to the label space.

Owns the decoding methods (label scoring, batched trie beams; `evtlm.decode.methods`), the
prompts-to-answers path over a run directory (`evtlm.decode.inference`) and how answers are
rendered and compared (`evtlm.decode.answers`). Never fits a baseline or writes a report.
"""
