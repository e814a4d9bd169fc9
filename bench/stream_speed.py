"""The stream formulation's speed figures in one run: next-item prediction over the Taobao
catalog (`bench.stream_predict`) and supervised targets per second in training
(`bench.stream_train`), each side by side with its references in the same process. The same rows
also appear in ``make bench-predict`` / ``make bench-train``; this runs only them.

    python -m bench.stream_speed          # make bench-stream
"""

from __future__ import annotations

import argparse

from bench.common import write_result

NAME = "stream_speed"


def main(argv: list[str] | None = None) -> int:
    from bench.predict_speed import stream_rows as predict_rows
    from bench.train_speed import stream_rows as train_rows

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer users and steps")
    args = ap.parse_args(argv)
    details: dict = {}
    predict: dict = {}
    train: dict = {}
    rows = predict_rows(predict, quick=args.quick) + train_rows(train, quick=args.quick)
    details = {"predict": predict.get("stream"), "train": train.get("stream")}
    path = write_result(NAME, "Stream formulation: next-item prediction and training targets/s", rows, details)
    for r in rows:
        print(f"{r['figure']:<70} {r['evtlm']:.3g} vs {r['reference']:.3g}  ratio {r['ratio']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
