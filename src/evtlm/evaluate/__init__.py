"""Stage 7, evaluate: the model beside strong baselines, on the same examples.

Owns the metrics, the baselines (`evtlm.evaluate.baselines`, SASRec in
`evtlm.evaluate.sasrec`), calibration, the evaluation harness (`evtlm.evaluate.harness`) and the
report (metrics.json, plots, report.md). Reads run directories and prepared splits; never trains
the model.
"""
