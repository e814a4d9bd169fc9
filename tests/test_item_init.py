"""Item rows initialised from the training transitions (evtlm.train.item_init)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from datasets import Dataset

from evtlm.train.item_init import cooccurrence_vectors, init_item_rows, transition_pairs


def _windows() -> Dataset:
    # window 0: events with items 3, 1, -1 (no label-space item), 2; targets at events 1, 2, 3 and after the last
    # window 1: events 0, 4; targets at event 0 (no event before it in the window) and 1
    return Dataset.from_dict({
        "ev_item": [[3, 1, -1, 2], [0, 4]],
        "tgt_local": [[1, 2, 3, 4], [0, 1]],
        "tgt_label": [[1, -1, 2, 0], [0, 4]],
    })


def test_pairs_are_the_event_before_each_target() -> None:
    prev, nxt = transition_pairs(_windows())
    # (3 -> 1); event 2 has no label-space answer; event 3's predecessor has no item; (2 -> 0) after the last event;
    # window 1's first target has no event before it in the window; (0 -> 4)
    assert list(zip(prev.tolist(), nxt.tolist())) == [(3, 1), (2, 0), (0, 4)]


def test_pairs_read_every_chunk() -> None:
    table = _windows().data.table
    two_chunks = pa.concat_tables([table, table])  # a dataset of two shards: one chunk each
    prev, nxt = transition_pairs(Dataset(two_chunks))
    assert len(prev) == 6 and list(zip(prev.tolist(), nxt.tolist()))[3:] == [(3, 1), (2, 0), (0, 4)]


def _clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two groups of items (0-9 and 10-19) whose users move only within their group; 20-24 never seen."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, 4000)
    return group * 10 + rng.integers(0, 10, 4000), group * 10 + rng.integers(0, 10, 4000)


def test_items_that_follow_each_other_start_closer() -> None:
    prev, nxt = _clusters()
    vecs, seen = cooccurrence_vectors(prev, nxt, n_items=25, dims=8)
    assert seen[:20].all() and not seen[20:].any()
    assert np.abs(vecs[20:]).sum() == 0, "an item without transitions keeps no direction (its random row stays)"
    unit = vecs[:20] / np.linalg.norm(vecs[:20], axis=1, keepdims=True)
    cos = unit @ unit.T
    same = np.equal.outer(np.arange(20) // 10, np.arange(20) // 10) & ~np.eye(20, dtype=bool)
    assert cos[same].mean() > 0.5 > cos[~np.equal.outer(np.arange(20) // 10, np.arange(20) // 10)].mean() + 0.4


def test_vectors_are_deterministic() -> None:
    prev, nxt = _clusters()
    a, _ = cooccurrence_vectors(prev, nxt, n_items=25, dims=8, seed=3)
    b, _ = cooccurrence_vectors(prev, nxt, n_items=25, dims=8, seed=3)
    np.testing.assert_array_equal(a, b)


def test_too_few_items_for_any_direction() -> None:
    vecs, seen = cooccurrence_vectors(np.array([0]), np.array([0]), n_items=3, dims=4)
    assert seen.tolist() == [True, False, False] and not vecs.any()


def test_init_writes_answer_rows_at_the_embedding_scale() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=60, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    answer_ids = list(range(30, 55))  # label i is token 30 + i
    before = model.get_input_embeddings().weight.detach().clone()
    prev, nxt = _clusters()
    data = Dataset.from_dict({"ev_item": [[int(p)] for p in prev], "tgt_local": [[1]] * len(prev),
                              "tgt_label": [[int(n)] for n in nxt]})
    assert init_item_rows(model, answer_ids, data) == 20
    after = model.get_input_embeddings().weight.detach()
    torch.testing.assert_close(after[:30], before[:30])  # the other tokens are untouched
    torch.testing.assert_close(after[50:], before[50:])  # labels 20-24 never moved: their random rows stay
    assert not torch.allclose(after[30:50], before[30:50])
    assert after[30:50].norm(dim=1).mean() == pytest.approx(before[30:55].norm(dim=1).mean().item(), rel=0.05)
    torch.testing.assert_close(model.get_output_embeddings().weight[30:50], after[30:50])  # tied: the scoring rows too


def test_item_init_is_checked() -> None:
    from evtlm.errors import RecipeError
    from evtlm.recipe import load_recipe

    assert load_recipe(None, ["task.name=next_item"]).model.item_init == "random"
    assert load_recipe(None, ["task.name=next_item", "model.item_init=transitions"]).model.item_init == "transitions"
    with pytest.raises(RecipeError, match=r"model.item_init: got 'transitions' for task purchase"):
        load_recipe(None, ["task.name=purchase", "model.item_init=transitions"])
    with pytest.raises(RecipeError, match=r"model.item_init: got 'transitions' with task.formulation=example"):
        load_recipe(None, ["task.name=next_item", "task.formulation=example", "model.item_init=transitions"])
