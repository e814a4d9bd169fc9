"""`StreamCollator`: stream windows (`evtlm.data.stream`) padded into the batch `StreamLM` reads.

Owns the padding of a batch of windows (tokens, per-event and per-target lists, the flattened
per-target features) and the token counts `evtlm.train.fit.fit` logs. Must not tokenize, build
windows or run the model.
"""

from __future__ import annotations

import torch


class StreamCollator:
    """Pads stream windows: tokens with ``pad_id``, event and target lists with -1 (-100 labels).

    >>> c = StreamCollator(pad_id=0)
    >>> row = {"input_ids": [5, 6, 7], "ev_end": [1, 2], "ev_item": [3, 4], "ev_action": [0, 0], "ev_time": [0, 9],
    ...        "ev_cat": [-1, -1], "tgt_local": [1, 2], "tgt_read": [1, 2], "tgt_label": [4, 1], "tgt_example": [0, 1]}
    >>> b = c([row, {**row, "input_ids": [5], "ev_end": [0], "ev_item": [3], "ev_action": [0], "ev_time": [0],
    ...       "ev_cat": [-1], "tgt_local": [1], "tgt_read": [0], "tgt_label": [2], "tgt_example": [2]}])
    >>> b["input_ids"].tolist(), b["tgt_label"].tolist(), int(b["real_tokens"])
    ([[5, 6, 7], [5, 0, 0]], [[4, 1], [2, -100]], 4)
    """

    event_keys = ("ev_end", "ev_pos", "ev_item", "ev_action", "ev_time", "ev_cat")
    target_keys = ("tgt_local", "tgt_read", "tgt_label", "tgt_example")

    def __init__(self, pad_id: int) -> None:
        self.pad_id = int(pad_id)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        n = len(rows)
        width = max(len(r["input_ids"]) for r in rows)
        n_ev = max(1, max(len(r["ev_end"]) for r in rows))
        n_t = max(1, max(len(r["tgt_read"]) for r in rows))
        out = {"input_ids": torch.full((n, width), self.pad_id, dtype=torch.long),
               "attention_mask": torch.zeros((n, width), dtype=torch.long)}
        for key in self.event_keys:
            out[key] = torch.full((n, n_ev), -1, dtype=torch.long)
        for key in self.target_keys:
            out[key] = torch.full((n, n_t), -100 if key == "tgt_label" else -1, dtype=torch.long)
        n_feat = 0
        if "tgt_feat" in rows[0]:  # flattened [T * F] per window (purchase)
            n_feat = next((len(r["tgt_feat"]) // len(r["tgt_read"]) for r in rows if len(r["tgt_read"])), 0)
            out["tgt_feat"] = torch.zeros((n, n_t, n_feat), dtype=torch.float32)
        for i, r in enumerate(rows):  # per window in a batch, not per event
            k = len(r["input_ids"])
            out["input_ids"][i, :k] = torch.as_tensor(r["input_ids"])
            out["attention_mask"][i, :k] = 1
            for key in self.event_keys:
                if key in r:
                    out[key][i, : len(r[key])] = torch.as_tensor(r[key])
            for key in self.target_keys:
                if key in r:
                    out[key][i, : len(r[key])] = torch.as_tensor(r[key])
            if n_feat and len(r["tgt_read"]):
                out["tgt_feat"][i, : len(r["tgt_read"])] = torch.as_tensor(r["tgt_feat"], dtype=torch.float32).view(-1, n_feat)
        out["tgt_read"] = out["tgt_read"].clamp(min=0)
        out["real_tokens"] = out["attention_mask"].sum()
        out["slot_tokens"] = torch.tensor(n * width)
        out["n_examples"] = torch.tensor(n)
        return out

