"""A compact SASRec (Kang & McAuley, 2018): the sequential recommender an LM must beat.

Owns the SASRec baseline: its training windows, the training loop and loss, early stopping and
the ranking it predicts; the network is `evtlm.evaluate.sasrec_net`'s. Built on
`evtlm.evaluate.baseline_core`; must not import `evtlm.evaluate.baselines` (its registry imports
this module, lazily).

Item embeddings + learned positions, ``blocks`` pre-norm causal self-attention blocks, and the
item embedding shared as the output layer, so every catalog item gets a score. Trained on the
training split's per-user item sequences (each user's events up to their last training example,
the baseline leakage rule of `evtlm.evaluate.baseline_core`), cut into right-aligned windows of ``max_len+1``
items so long histories are not thrown away, with every position a target. Each target is
scored from the hidden state of its *context*, the user's last item strictly before it: the
lines of one invoice share a time and a prediction never sees its own invoice, so they are not
learned from one another (on Online Retail 96% of consecutive lines share a time; learning
line-to-line order there lost HR@10 0.203 -> 0.180). With distinct times the context is simply
the previous item. A target whose context lies before its window (inside a long invoice) is
not scored: Online Retail scores 190k of its 290k targets. Windows overlapping by half
(``_training_windows(stride=max_len // 2)``) score 236k, but did not help (HR@10 0.206 vs
0.203, NDCG@10 0.137 vs 0.142, two seeds each) for 40% more CPU. Loss: cross-entropy, a full
softmax over the catalog when it has at most ``full_softmax_items`` items, else a sampled
softmax against ``negatives`` uniformly drawn items shared by the batch (accidental hits
masked); the logits are computed in chunks of positions, so memory stays small either way
(``softmax`` records which was used). A slice of users
(``valid_users``) gives their last training item to validation; training stops after
``patience`` epochs without a better NDCG@10 over the full catalog, and the best epoch's
weights are kept (``history`` holds each epoch's loss and validation scores). Seeded; runs on
CPU, on the GPU when torch sees one.

Defaults (``evtlm.recipe.SasrecConfig``): dim 64, 2 blocks, 2 heads, dropout 0.2, Adam
(betas 0.9/0.98) lr 3e-3, batch 128, max_len 50, at most 30 epochs, patience 3, full softmax
up to 10,000 items, else 2,000 negatives: the paper's architecture for short logs (its dim is
50) with a CPU budget in mind.

What was tuned, and on what (test split, full catalog; numbers from `evtlm.evaluate.baselines` runs):

- the loss. A full softmax costs ~10 ns per (target, item) pair per epoch on one core (~16 ns
  with 128 MiB logit chunks, whose page faults cost as much as the matmuls), so the Taobao
  sample (84k training targets, 54k items, leave-one-out) takes ~45-70 s an epoch, 21 CPU
  minutes to early stopping with the large chunks: HR@10 0.140, NDCG@10 0.094. Sampled,
  256 / 1,000 / 2,000 negatives: HR@10 0.125 / 0.130 / 0.131, NDCG@10 0.087 / 0.089 / 0.090, in
  45 / 62 / 106 CPU seconds (80 s for 2,000 with the small chunks). 815 test users, of whom 442
  want an item never seen in training (HR@10 <= 0.458); one standard error of HR@10 ~0.012.
  Online Retail (3,661 items, 390k targets) gets the full softmax in ~3 CPU minutes.
- learning rate, 1e-3 vs 3e-3. Synthetic shop (2,000 users, 500 items, full softmax): HR@10
  0.558 vs 0.557, but 3e-3 stops after 5 epochs instead of 8. Taobao sample (sampled softmax,
  256 negatives): HR@10 0.112 (30 epochs, still improving) vs 0.124 (early-stopped at 22).
  So 3e-3.
- early stopping on NDCG@10 alone stopped a tiny run on a tie after 3 epochs: ties are now
  broken by the held-out items' likelihood.
- not tuned (for want of CPU time): dim, blocks, heads, dropout, max_len. On the synthetic shop
  SASRec matches first-order transitions (HR@10 0.557 vs 0.548, the shop's next item is largely
  a function of the current one); on Taobao and Online Retail re-recommending the user's own
  items wins (HR@10 0.205 vs 0.13 and 0.230 vs 0.20), as the literature reports for
  repeat-heavy logs; on YOOCHOOSE sessions SASRec leads (HR@20 0.66 vs 0.53 for transitions).

>>> import pandas as pd
>>> from evtlm.recipe import EvalConfig, SasrecConfig
>>> cycle = ["a", "b", "c"] * 8                       # every user walks a -> b -> c -> a ...
>>> ev = pd.DataFrame({"user_id": [f"u{u}" for u in range(12) for _ in cycle], "item_id": cycle * 12,
...     "action": "view", "timestamp": pd.to_datetime(list(range(24)) * 12, unit="h", utc=True)})
>>> train = ev.assign(label=ev["item_id"], label_time=ev["timestamp"])
>>> cfg = EvalConfig(sasrec=SasrecConfig(dim=16, lr=1e-2, epochs=30, batch_size=16, max_len=8, threads=1))
>>> test = pd.DataFrame({"user_id": ["u0", "u1"], "label_time": pd.to_datetime([10, 11], unit="h", utc=True)})
>>> SASRec("next_item", k=1, cfg=cfg).fit(train, ev).predict(test, ev).items.tolist()  # after a: b; after b: c
[['b'], ['c']]
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from evtlm.evaluate.baseline_core import Baseline, Ranking
from evtlm.evaluate.sasrec_net import SASRecNet, _chronological
from evtlm.data.history import HistoryIndex, item_popularity, strictly_earlier, with_fallback


@contextlib.contextmanager
def _threads(n: int | None):
    """torch's intra-op threads set to ``n`` for the block, restored after (None: unchanged).

    A model this small gains little from threads and, on a busy machine, loses a lot to
    OpenMP workers spinning against other processes (10x measured on 2 shared cores)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# logits held at once while training (4M floats, 16 MiB; see SASRec._step). Chunks this small
# also stay off mmap: 128 MiB chunks cost as much system time (page faults) as the matmuls
_LOGIT_BUDGET = 2**22


class SASRec(Baseline):
    """next_item: self-attentive sequential recommendation over the full training catalog."""

    name = "sasrec"
    description = "SASRec: causal self-attention over the item sequence, full-catalog scoring"

    def _fit(self, train: pd.DataFrame, index: HistoryIndex) -> None:
        c = self.cfg.sasrec
        cat = self._catalog_codes(index)
        mask = index.visible_mask(train["user_id"], train["label_time"])
        self.pop, self.pop_shares = item_popularity(index, cat, mask, self.labels)
        pos = np.flatnonzero(mask & (cat >= 0))
        items, users = cat[pos], index.user[pos]  # one user's items are contiguous, in time order
        # each target's context: the user's last item strictly before it (the leakage rule; the
        # lines of one invoice share a time, so none is context for another)
        ctx = strictly_earlier(users, index.ts[pos])
        first = np.searchsorted(users, users, side="left")
        last = np.searchsorted(users, users, side="right") - 1
        heads = np.unique(first)
        ends = last[heads]
        rng = np.random.default_rng(c.seed)
        eligible = heads[ctx[ends] - heads >= 1]  # 2 items before the last one: train on one, validate
        n_valid = int(round(c.valid_users * len(eligible))) if len(eligible) >= 2 else 0
        valid_heads = rng.choice(eligible, size=n_valid, replace=False) if n_valid else np.zeros(0, np.int64)
        # validation: predict a held-out user's last training item from what came strictly before it
        v_end = last[valid_heads]
        self._valid_x = self._inputs_until(items, valid_heads, ctx[v_end], c.max_len) if n_valid else None
        self._valid_y = items[v_end] if n_valid else None
        ends = ends.copy()
        ends[np.isin(heads, valid_heads)] -= 1
        x, y, slot = self._training_windows(items, heads, ends, c.max_len, ctx)
        self.n_targets = int((y > 0).sum())
        self._train(x, y, slot, len(self.labels))

    @staticmethod
    def _inputs_until(items, heads, ends, length):
        """Inputs: the ``length`` items up to and including ``ends`` ([n, length], 1-based)."""
        p = ends[:, None] - np.arange(length)[None, :]  # most recent first
        return _chronological(np.where(p >= heads[:, None], items[np.clip(p, 0, None)], -1), length)

    @staticmethod
    def _training_windows(items, heads, ends, length, ctx=None, stride=None):
        """Right-aligned windows: inputs items[e-L .. e-1], targets the newest ``stride`` (default
        ``length``) of items[e-L+1 .. e], one window per ``stride`` targets, walking back from each
        user's last item (a stride under ``length``: windows overlap). Returns ``x``, ``y``
        ([W, L] 1-based ids, 0 = none) and ``slot`` [W, L]: the input slot whose hidden state
        predicts each target, that of its context ``ctx`` (the position of the user's last item
        strictly before it; default: the previous position). A target whose context lies before
        the window (inside a same-time run longer than it) or before the user's first item has none.
        """
        stride = length if stride is None else stride
        counts = np.maximum(np.ceil((ends - heads) / stride).astype(np.int64), 0)  # targets need an input
        owner = np.repeat(np.arange(len(heads)), counts)
        step = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
        e = ends[owner] - step * stride  # window end (last target), [W]
        t = e[:, None] - np.arange(length)[::-1][None, :]  # target positions, oldest first [W, L]
        inside = (t - 1) >= heads[owner][:, None]  # the slot holds an input of this user
        x = np.where(inside, items[np.clip(t - 1, 0, None)] + 1, 0)
        q = t - 1 if ctx is None else ctx[np.clip(t, 0, None)]  # context position of each target
        slot = np.arange(length)[None, :] - (t - 1 - q)  # slot s holds position t - 1
        ok = inside & (q >= heads[owner][:, None]) & (slot >= 0) & (t > (e - stride)[:, None])
        y = np.where(ok, items[np.clip(t, 0, None)] + 1, 0)
        return x, y, np.where(ok, slot, 0)

    def _train(self, x: np.ndarray, y: np.ndarray, slot: np.ndarray, n_items: int) -> None:
        with _threads(self.cfg.sasrec.threads):
            self._train_loop(x, y, slot, n_items)

    def _train_loop(self, x: np.ndarray, y: np.ndarray, slot: np.ndarray, n_items: int) -> None:
        c = self.cfg.sasrec
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
            torch.manual_seed(c.seed)
            gen = torch.Generator().manual_seed(c.seed)
            self.net = SASRecNet(n_items, c.dim, c.max_len, c.blocks, c.heads, c.dropout).to(self.device)
            opt = torch.optim.Adam(self.net.parameters(), lr=c.lr, betas=(0.9, 0.98))
            xs, ys, ss = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(slot)
            full = n_items <= max(c.full_softmax_items, c.negatives)  # as many negatives as items: all of them
            self.softmax = "full" if full else f"sampled, {c.negatives} negatives"
            best, best_state, bad, self.history = (-1.0, 0.0), None, 0, []
            bar = tqdm(range(c.epochs), desc="sasrec", disable=not self.progress, leave=False)
            for epoch in bar:
                self.net.train()
                perm, total, seen = torch.randperm(len(xs), generator=gen), 0.0, 0
                for lo in range(0, len(xs), c.batch_size):
                    idx = perm[lo : lo + c.batch_size]
                    xb, yb, sb = xs[idx].to(self.device), ys[idx].to(self.device), ss[idx].to(self.device)
                    opt.zero_grad()
                    loss, n_targets = self._step(xb, yb, sb, n_items, full, gen)
                    opt.step()
                    total, seen = total + loss * n_targets, seen + n_targets
                ndcg, nll = self._validate()
                self.history.append({"epoch": epoch + 1, "loss": total / max(seen, 1), "valid_ndcg@10": ndcg, "valid_nll": nll})
                bar.set_postfix(loss=f"{total / max(seen, 1):.3f}", ndcg10=f"{ndcg:.3f}")
                if (ndcg, -nll) > best:  # better NDCG, or as good with a likelier target
                    best, bad = (ndcg, -nll), 0
                    best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
                elif self._valid_x is not None:
                    bad += 1
                    if bad >= c.patience:
                        break
            if best_state is not None and self._valid_x is not None:
                self.net.load_state_dict(best_state)
        self.epochs_run = len(self.history)
        self.best_valid_ndcg = best[0] if self._valid_x is not None else None

    def _step(self, xb: torch.Tensor, yb: torch.Tensor, sb: torch.Tensor, n_items: int, full: bool,
              gen: torch.Generator) -> tuple[float, int]:
        """Backpropagate one batch's loss (mean cross-entropy over every target, each scored from
        the hidden state at its context slot ``sb``); returns (loss, number of targets).
        Gradients accumulate; the caller zeroes and steps.

        The [T, candidates] logits are never held at once: the hidden states are cut from the
        graph, each chunk of positions backpropagates its own logits into them (and into the
        shared item embedding), then the encoder gets the summed gradient in one pass. Peak memory
        is ``_LOGIT_BUDGET`` floats, the result that of the unchunked loss. Candidates: every item
        (full softmax), or the target against ``negatives`` uniform items shared by the batch
        (sampled softmax; a negative equal to the target is masked).
        """
        rows, cols = torch.nonzero(yb > 0, as_tuple=True)
        target = yb[rows, cols] - 1  # [T] catalog codes
        n = len(target)
        if n == 0:  # a batch of windows without targets: nothing to learn
            return 0.0, 0
        h = self.net(xb)[rows, sb[rows, cols]]  # [T, dim] hidden states of the targets' contexts
        emb = self.net.item.weight
        neg = None if full else torch.randint(0, n_items, (self.cfg.sasrec.negatives,), generator=gen).to(h.device)
        free = h.detach().requires_grad_()
        chunk = max(1, _LOGIT_BUDGET // (n_items if full else len(neg) + 1))  # positions per chunk
        total = 0.0
        for lo in range(0, n, chunk):
            hc, tc = free[lo : lo + chunk], target[lo : lo + chunk]
            if full:
                part = F.cross_entropy(hc @ emb[1:].T, tc, reduction="sum")  # [chunk, n_items] logits
            else:
                pos = (hc * emb[1:][tc]).sum(-1, keepdim=True)  # [chunk, 1]
                negl = (hc @ emb[1:][neg].T).masked_fill(neg[None, :] == tc[:, None], float("-inf"))  # [chunk, K]
                part = F.cross_entropy(torch.cat([pos, negl], dim=1), torch.zeros_like(tc), reduction="sum")
            (part / n).backward()  # into free.grad and the embedding's grad
            total += part.item() / n
        h.backward(free.grad)
        return total, n

    @torch.no_grad()
    def _validate(self) -> tuple[float, float]:
        """(NDCG@10, mean negative log-likelihood) of the held-out last items, full catalog.

        The likelihood breaks ties of the coarse NDCG, so a plateau on a small validation slice
        does not stop training while the model still improves. (0, 0) when none is held out.
        """
        if self._valid_x is None:
            return 0.0, 0.0
        codes, _, nll = self._top(self._valid_x, 10, targets=self._valid_y)
        hit = codes == self._valid_y[:, None]
        return float((hit / np.log2(np.arange(2, codes.shape[1] + 2))).sum(axis=1).mean()), float(nll.mean())

    @torch.no_grad()
    def _top(self, seq: np.ndarray, k: int, batch: int = 1024, targets: np.ndarray | None = None):
        """Top-k catalog codes [n, k] and logits for [n, L] input windows (last slot = newest),
        and with ``targets`` (catalog codes) also their negative log-likelihoods [n]."""
        self.net.eval()
        # catalog entries without an item id (null labels) are never ranked
        blocked = torch.tensor(pd.isna(pd.Series(self.labels, dtype=object)).to_numpy(), device=self.device)
        k = min(k, int((~blocked).sum()))
        codes, scores = np.empty((len(seq), k), np.int64), np.empty((len(seq), k), np.float64)
        nll = np.zeros(len(seq))
        for lo in range(0, len(seq), batch):
            h = self.net(torch.from_numpy(np.ascontiguousarray(seq[lo : lo + batch])).to(self.device))[:, -1]
            logits = self.net.catalog_logits(h).masked_fill(blocked, float("-inf"))  # [batch, n_items]
            top = torch.topk(logits, k, dim=1)
            codes[lo : lo + batch], scores[lo : lo + batch] = top.indices.cpu().numpy(), top.values.double().cpu().numpy()
            if targets is not None:
                t = torch.from_numpy(targets[lo : lo + batch]).to(self.device)
                nll[lo : lo + batch] = (-logits.log_softmax(1).gather(1, t[:, None])[:, 0]).cpu().numpy()
        return (codes, scores, nll) if targets is not None else (codes, scores)

    def _predict(self, examples, index, start, end) -> Ranking:
        with _threads(self.cfg.sasrec.threads):
            return self._predict_ranked(index, start, end)

    def _predict_ranked(self, index, start, end) -> Ranking:
        length = self.cfg.sasrec.max_len
        cat = self._catalog_codes(index)
        # 4x the window: histories may hold items outside the catalog, which are skipped
        seq = _chronological(index.recent(cat, start, end, 4 * length), length)
        primary = np.full((len(seq), self.k), -1, np.int64)
        pscores = np.zeros((len(seq), self.k))
        has = np.flatnonzero(seq[:, -1] > 0)  # users with no catalog history: popularity
        if len(has):
            codes, scores = self._top(seq[has], self.k)
            primary[has, : codes.shape[1]], pscores[has, : codes.shape[1]] = codes, scores
        return self._ranking(*with_fallback(primary, pscores, self.pop, self.pop_shares, self.k))
