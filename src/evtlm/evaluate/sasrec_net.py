"""The SASRec network and its input layout: `SASRecNet` (item embeddings + learned positions,
``blocks`` pre-norm causal self-attention blocks, the item embedding shared as the output layer)
and `_chronological`, which lays a history out as the network's input window. Owns no data
selection, training or ranking (`evtlm.evaluate.sasrec`, which this module must not import).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class _Block(nn.Module):
    """Pre-norm block: x + attn(ln(x)), then x + ffn(ln(x))."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, length, dim)))
        return x + self.drop(self.ffn(self.ln2(x)))


class SASRecNet(nn.Module):
    """[B, L] item ids (1-based, 0 = left padding) -> [B, L, dim] hidden states."""

    def __init__(self, n_items: int, dim: int, max_len: int, blocks: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"sasrec.dim {dim} must be a multiple of sasrec.heads {heads}")
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(blocks))
        self.norm, self.drop = nn.LayerNorm(dim), nn.Dropout(dropout)
        nn.init.normal_(self.item.weight, std=dim**-0.5)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.scale = math.sqrt(dim)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        length = seq.shape[1]
        x = self.drop(self.item(seq) * self.scale + self.pos.weight[:length])
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=seq.device)
        # attend to earlier real items; a padding slot sees only itself (no all-masked row -> no NaN)
        mask = (causal & ((seq > 0)[:, None, :] | eye))[:, None]  # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)

    def catalog_logits(self, h: torch.Tensor) -> torch.Tensor:
        """[..., dim] -> [..., n_items]: dot products with every item (shared embedding)."""
        return h @ self.item.weight[1:].T


def _chronological(recent_first: np.ndarray, length: int) -> np.ndarray:
    """[n, M] catalog codes, most recent first, -1 gaps -> [n, length] 1-based ids, oldest first,
    right-aligned with 0 padding on the left."""
    order = np.argsort(recent_first < 0, axis=1, kind="stable")  # real items first, order kept
    packed = np.take_along_axis(recent_first, order, axis=1)[:, :length]
    if packed.shape[1] < length:
        packed = np.pad(packed, ((0, 0), (0, length - packed.shape[1])), constant_values=-1)
    return packed[:, ::-1] + 1
