"""The stream formulation (evtlm.data.stream, evtlm.train.stream_model): windows, no peeking, label-space answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evtlm.data.prepare import prepare, text_recipe
from evtlm.train.modeling import build_scratch_model
from evtlm.recipe import Recipe
from evtlm.data.stream import ACTION_FEATURES, N_ACTION_FEATURES, STREAM_COLUMNS, action_features, now_windows, plan_windows
from evtlm.train.stream_model import StreamCollator, StreamLM, answer_token_ids, stream_predictions
from evtlm.text.tokenization import item_token_ids

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 128, "vocab_size": 300, "pretrain_epochs": 0}


def _recipe(task: str, **task_kw) -> Recipe:
    # next_action's verb phrases need a vocabulary where they start with different tokens
    scratch = {**TINY, "vocab_size": 300 if task == "next_item" else 700}
    return text_recipe(Recipe.model_validate({
        "data": {"synthetic": {"users": 40, "items": 30, "categories": 3, "days": 14, "seed": 3}},
        "task": {"name": task, "max_tokens": 96, **task_kw},
        "split": {"method": "leave_one_out"},
        "model": {"when_unavailable": "scratch", "scratch": scratch},
    }))


def _stream(task: str, cache_dir, **model_kw):
    """(recipe, prepared data, a random-weight StreamLM) for a tiny synthetic shop."""
    recipe = _recipe(task)
    prepared = prepare(recipe, progress=False, cache_dir=cache_dir, use_cache=False)
    torch.manual_seed(0)
    lm = build_scratch_model(recipe.model.scratch, prepared.tokenizer)
    return recipe, prepared, StreamLM(lm, answer_token_ids(prepared.tokenizer, prepared.label_space), **model_kw).eval()


@pytest.fixture(scope="module")
def item_stream(tmp_path_factory):
    return _stream("next_item", tmp_path_factory.mktemp("cache"), copy=True)


@pytest.fixture(scope="module")
def markov_stream(tmp_path_factory):
    return _stream("next_item", tmp_path_factory.mktemp("cache"), copy=True, markov=True)


@pytest.fixture(scope="module")
def pair_stream(tmp_path_factory):
    """next_item with the copy path and a pair memory over the training pairs, random weights."""
    from evtlm.train.item_init import pair_index, transition_pairs

    recipe, prepared, model = _stream("next_item", tmp_path_factory.mktemp("cache"), copy=True)
    pairs = pair_index(*transition_pairs(prepared.datasets["train"]), n_items=len(prepared.label_space))
    model = StreamLM(model.lm, model.answer_ids.tolist(), copy=True, pairs=pairs).eval()
    with torch.no_grad():
        model.pair_weight.normal_(0, 0.3)
    return recipe, prepared, model


@pytest.fixture(scope="module")
def action_stream(tmp_path_factory):
    """next_action with both feature paths: counts read in the forward pass and the gbt's own
    inputs per target (tgt_feat, over quantile bins), random weights that give them a say."""
    recipe, prepared, model = _stream("next_action", tmp_path_factory.mktemp("cache"), features=True,
                                      target_features=N_ACTION_FEATURES, feature_bins=4)
    model.fit_feature_scale(prepared.datasets["train"])
    with torch.no_grad():
        for p in model.target_mlp.parameters():
            p.normal_(0, 0.5)
    return recipe, prepared, model


def _first_windows(prepared, n: int = 4) -> dict:
    """A collated batch of the first ``n`` training windows, only the model's inputs."""
    ds = prepared.datasets["train"].select_columns([c for c in STREAM_COLUMNS if c in prepared.datasets["train"].column_names])
    batch = StreamCollator(0)([ds[i] for i in range(min(n, len(ds)))])
    for key in ("tgt_example", "real_tokens", "slot_tokens", "n_examples"):
        batch.pop(key)
    return batch


def test_recipe_defaults_resolve_to_stream_with_item_tokens_and_copy():
    r = _recipe("next_item")
    assert (r.task.formulation, r.model.item_tokens, r.model.copy_path, r.verbalize.item) == ("stream", True, True, "token")
    a = _recipe("next_action")
    assert a.task.formulation == "stream" and not a.model.copy_path
    e = text_recipe(Recipe.model_validate({"task": {"name": "next_item", "formulation": "example"}}))
    assert e.task.formulation == "example" and not e.model.item_tokens


def test_every_training_target_is_supervised_once_and_windows_fit(item_stream):
    recipe, prepared, _ = item_stream
    train = prepared.datasets["train"]
    got = np.concatenate(train["tgt_example"])
    want = prepared.index["train"]["example_id"].to_numpy()
    assert sorted(got.tolist()) == sorted(want.tolist())  # each once, none lost
    assert max(len(x) for x in train["input_ids"]) <= recipe.task.max_tokens
    items = set(item_token_ids(prepared.tokenizer))
    for row in train.select(range(min(20, len(train)))):
        assert all(r < len(row["input_ids"]) for r in row["tgt_read"])
        # every event's item token is found (the read-out adds its hidden state), inside the event
        assert all(row["input_ids"][p] in items for p in row["ev_pos"])
        assert all(p <= e for p, e in zip(row["ev_pos"], row["ev_end"]))
        # a target is read at the end of the event before it (or the actor text for the first)
        for local, read in zip(row["tgt_local"], row["tgt_read"]):
            assert read == (row["ev_end"][local - 1] if local > 0 else read)


def test_windows_are_aligned_to_the_end_of_the_history():
    cum = np.arange(0, 31, 3)  # 10 events of 3 tokens
    w = plan_windows(cum, np.array([0]), np.array([10]), np.array([1]), np.zeros(9, np.int64),
                     np.arange(1, 10), max_tokens=10, min_context=0.0)
    # 3 events of 3 tokens fit beside the actor; the latest window is read after event 8, the
    # next after event 4 (target 5's event starts window 1 as its first read, after the actor)
    assert (w.start.tolist(), w.stop.tolist()) == ([6, 2, 0], [9, 5, 1])
    assert np.bincount(w.of_target).tolist() == [4, 4, 1]  # targets 6-9, 2-5, 1: each read once


def _mutate_after(batch: dict, b: int, k: int, rng: np.random.Generator, vocab: int) -> dict:
    """Change everything of window b at and after target k's event: tokens after its read position,
    the item, action, time and category of its event and every later one."""
    out = {key: v.clone() for key, v in batch.items()}
    read, local = int(out["tgt_read"][b, k]), int(out["tgt_local"][b, k])
    width = int(out["attention_mask"][b].sum())
    if read + 1 < width:
        out["input_ids"][b, read + 1:width] = torch.as_tensor(rng.integers(0, vocab, width - read - 1))
    n_ev = int((out["ev_end"][b] >= 0).sum())
    for key, hi in (("ev_item", 20), ("ev_action", 5), ("ev_time", 10**6), ("ev_cat", 3)):
        if local < n_ev:
            out[key][b, local:n_ev] = torch.as_tensor(rng.integers(0, hi, n_ev - local))
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6))
def test_no_peeking_changing_a_target_event_or_later_never_changes_its_scores(item_stream, seed):
    """next_item with the copy path (the pointer reads earlier events' hidden states and features)."""
    _check_no_peeking(*item_stream[1:], seed)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6))
def test_no_peeking_with_the_markov_path(markov_stream, seed):
    """next_item with the last item's row read directly (model.markov_path)."""
    _check_no_peeking(*markov_stream[1:], seed)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6))
def test_no_peeking_with_the_pair_memory(pair_stream, seed):
    """next_item with a learned bias per (last item, answer) pair (model.pair_memory)."""
    _check_no_peeking(*pair_stream[1:], seed)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6))
def test_no_peeking_with_history_features(action_stream, seed):
    """next_action with history features (counts and recency of earlier events)."""
    _check_no_peeking(*action_stream[1:], seed)


def _check_no_peeking(prepared, model, seed):
    rng = np.random.default_rng(seed)
    ds = prepared.datasets["train"]
    ds = ds.select_columns([c for c in STREAM_COLUMNS if c in ds.column_names])
    rows = [ds[int(i)] for i in rng.choice(len(ds), size=min(3, len(ds)), replace=False)]
    batch = StreamCollator(0)(rows)
    for key in ("real_tokens", "slot_tokens", "n_examples", "tgt_example"):
        batch.pop(key)
    b = int(rng.integers(len(rows)))
    n_t = len(rows[b]["tgt_read"])
    k = int(rng.integers(n_t))
    before = model.score(batch)
    after = model.score(_mutate_after(batch, b, k, rng, len(prepared.tokenizer)))
    # targets are flattened row-major: window b's targets 0..k come after earlier windows' targets
    offset = sum(len(r["tgt_read"]) for r in rows[:b])
    read_k = rows[b]["tgt_read"][k]
    same = [offset + t for t in range(n_t) if rows[b]["tgt_read"][t] <= read_k]
    torch.testing.assert_close(before[same], after[same], rtol=0, atol=1e-5)


def test_every_ranked_answer_is_a_label_space_member(item_stream):
    recipe, prepared, model = item_stream
    assert _recipe("next_action").model.history_features and not recipe.model.history_features
    ids = prepared.index["test"]["example_id"].to_numpy()
    idx, scores = stream_predictions(model, prepared.datasets["test"], ids, top_k=10)
    assert idx.shape == (len(ids), 10)
    assert ((idx >= 0) & (idx < len(prepared.label_space))).all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    excl, _ = stream_predictions(model, prepared.datasets["test"], ids, top_k=10, exclude_history=True)
    ds = prepared.datasets["test"]
    seen = {int(e): {i for i, j in zip(r["ev_item"], range(len(r["ev_item"]))) if i >= 0 and j < t}
            for r in ds for e, t in zip(r["tgt_example"], r["tgt_local"])}
    for row, e in zip(excl, ids):
        assert not (set(row.tolist()) & seen[int(e)])


def test_scoring_finds_the_windows_of_targets_from_arrow_lists(item_stream):
    """stream_predictions reads which window holds which target, and each window's length, from
    the Arrow list columns (no Python list per window): the same as reading the rows one by one,
    on the split itself, on a select() of it and on a table of several chunks."""
    import datasets as hf
    import pyarrow as pa

    from evtlm.train.stream_scoring import _targets_and_lengths

    _, prepared, model = item_stream
    ds = prepared.datasets["test"]
    picked = ds.select([4, 1, 3])  # an indices mapping, out of order
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    chunked = hf.Dataset(pa.concat_tables([table.slice(0, 2), table.slice(2)]))
    assert chunked.data.table.column("ev_end").num_chunks == 2
    for view in (ds, picked, chunked):
        window_of, example, lengths = _targets_and_lengths(view)
        rows = list(view)
        assert example.tolist() == [int(e) for r in rows for e in r["tgt_example"]]
        assert window_of.tolist() == [w for w, r in enumerate(rows) for _ in r["tgt_example"]]
        assert lengths.tolist() == [len(r["ev_end"]) for r in rows]
    ids = np.asarray([e for r in picked for e in r["tgt_example"]])
    got, _ = stream_predictions(model, picked, ids, top_k=5)
    want, _ = stream_predictions(model, ds, ids, top_k=5)
    np.testing.assert_array_equal(got, want)


def test_the_training_metric_reads_every_valid_target_up_to_its_cap(item_stream, monkeypatch):
    """eval.fit_max_targets: all of validation under the cap (as on every shipped log), a seeded
    sample of exactly that many targets beyond it, their truths aligned with their ids."""
    import evtlm.evaluate.training_metric as tm

    recipe, prepared, model = item_stream
    ix = prepared.index["valid"]
    label_of = dict(zip(ix["example_id"].to_numpy().tolist(), ix["label_index"].to_numpy().tolist()))
    asked = []

    def fake_predictions(model, recipe, dataset, ids, depth, progress=False):
        asked.append(np.asarray(ids))
        return np.asarray([[label_of[int(e)]] * depth for e in ids])  # always right: metrics show alignment

    monkeypatch.setattr(tm, "model_predictions", fake_predictions)
    for cap, want in ((10**6, len(ix)), (7, 7)):
        capped = recipe.model_copy(update={"eval": recipe.eval.model_copy(update={"fit_max_targets": cap})})
        fn, metric, _ = tm.make_evaluate_fn(capped, prepared)
        scores = fn(model)
        assert len(asked[-1]) == want == len(set(asked[-1].tolist())) and set(asked[-1].tolist()) <= set(label_of)
        assert scores["hr@1"] == 1.0


def test_prediction_reads_the_same_position_as_evaluation(item_stream):
    """now_windows (evtlm predict) on the events before a test target gives the test window's scores."""
    recipe, prepared, model = item_stream
    ix = prepared.index["test"]
    ev = prepared.events.events
    users = ix["user_id"].astype(str).to_numpy()[:5]
    stops = ix["hist_stop"].to_numpy()[:5]
    starts = ix["hist_start"].to_numpy()[:5]
    part = ev.iloc[np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)])]
    now = now_windows(part, prepared.events.catalog, recipe, prepared.tokenizer, prepared.label_space)
    got = stream_predictions(model, now.dataset, now.ok, top_k=5)[1]
    want = stream_predictions(model, prepared.datasets["test"], ix["example_id"].to_numpy()[:5], top_k=5)[1]
    row_of = {now.user_ids[pos]: i for i, pos in enumerate(now.ok)}  # got is in now.ok order
    np.testing.assert_allclose(got[[row_of[u] for u in users]], want, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_action_features_never_read_the_target_or_anything_after_it(action_stream, seed):
    """tgt_feat of a next_action target (the gbt's inputs) is computed from the events strictly
    before it: rewriting the target event and everything after leaves it unchanged."""
    _, prepared, _ = action_stream
    ev, ix = prepared.events.events, prepared.index["test"]
    users, times = ix["user_id"].astype(str).to_numpy(), ix["label_time"].to_numpy()
    before = action_features(prepared.events, users, times)
    rng = np.random.default_rng(seed)
    t = ev["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    late = t >= pd.Series(times, index=users).groupby(level=0).min().reindex(ev["user_id"].astype(str)).to_numpy()
    assert late.any()
    changed = ev.copy()
    changed.loc[late, "action"] = rng.choice(["view", "cart", "purchase", "favorite"], int(late.sum()))
    changed.loc[late, "item_id"] = rng.choice(ev["item_id"].dropna().unique(), int(late.sum()))
    log = type(prepared.events)(events=changed, catalog=prepared.events.catalog, report=prepared.events.report)
    np.testing.assert_array_equal(action_features(log, users, times), before)
    assert before.shape == (len(ix), N_ACTION_FEATURES) and before[:, ACTION_FEATURES.index("n_events")].min() > 0


def test_next_action_prediction_reads_the_same_features_as_evaluation(action_stream):
    """now_windows on a user's events before a test target gives that target's scores, the
    per-target features included (categories from the catalog, as in training)."""
    recipe, prepared, model = action_stream
    ix = prepared.index["test"]
    ev = prepared.events.events
    users = ix["user_id"].astype(str).to_numpy()[:6]
    starts, stops = ix["hist_start"].to_numpy()[:6], ix["hist_stop"].to_numpy()[:6]
    part = ev.iloc[np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)])]
    now = now_windows(part, prepared.events.catalog, recipe, prepared.tokenizer, prepared.label_space)
    got = stream_predictions(model, now.dataset, now.ok)
    want = stream_predictions(model, prepared.datasets["test"], ix["example_id"].to_numpy()[:6])
    row_of = {now.user_ids[pos]: i for i, pos in enumerate(now.ok)}
    np.testing.assert_allclose(got[[row_of[u] for u in users]], want, atol=1e-5)
    assert np.ptp(want, axis=0).max() > 1e-3  # the features move the answers


def test_explore_loss_adds_the_catalog_heads_own_nll_in_training_only(item_stream):
    """The copy path trains on the mixture's NLL plus ``explore_loss`` x the explore head's own NLL
    (so the catalog head learns repeated answers too); evaluation and scoring are the mixture's."""
    recipe, prepared, model = item_stream
    batch = _first_windows(prepared)
    ids = model.answer_ids.tolist()
    mix, aux = (StreamLM(model.lm, ids, copy=True, explore_loss=w) for w in (0.0, 1.0))
    explore_only = StreamLM(model.lm, ids, copy=False)
    for m in (mix, aux, explore_only):
        m.load_state_dict(model.state_dict(), strict=False)  # the same weights everywhere

    def loss(m):
        torch.manual_seed(0)  # the same dropout masks in every forward
        with torch.no_grad():
            return float(m(**batch).loss)

    try:
        for m in (mix, aux, explore_only):
            m.train()
        assert abs(loss(aux) - (loss(mix) + loss(explore_only))) < 1e-4
        assert StreamLM(model.lm, ids, copy=True).explore_loss == 1.0  # on by default
        for m in (mix, aux):
            m.eval()
        assert abs(loss(aux) - loss(mix)) < 1e-6
        np.testing.assert_allclose(aux.score(batch).numpy(), mix.score(batch).numpy())
    finally:
        model.eval()


def _assert_adds_per_last_item(model, on, batch, per_last_item) -> torch.Tensor:
    """``on`` (a StreamLM with one path on) scores ``batch`` as the same LM without it plus
    ``per_last_item[item of the event before the target]`` on every answer's logit, and nothing for
    a target with no item before it. Returns the expected added logits."""
    plain = StreamLM(model.lm, model.answer_ids.tolist(), copy=False).eval()
    diff = on.score(batch) - plain.score(batch)  # log-softmax: the added logits up to a constant per row
    real = batch["tgt_local"] >= 0
    prev_item = batch["ev_item"].gather(1, (batch["tgt_local"] - 1).clamp(min=0))[real]
    has_prev = (batch["tgt_local"][real] > 0) & (prev_item >= 0)
    expected = torch.zeros_like(diff)
    expected[has_prev] = per_last_item[prev_item[has_prev]]
    assert has_prev.any() and (~has_prev).any(), "the batch must hold targets with and without a last item"
    residual = diff - expected
    torch.testing.assert_close(residual - residual.mean(1, keepdim=True), torch.zeros_like(diff), atol=1e-4, rtol=0)
    return expected


def test_markov_path_adds_the_scaled_cosine_of_the_last_items_row(markov_stream):
    """Each target's logits gain w x cos(E[item of the event before it], E[answer]); a target with
    no item before it in the window gains nothing."""
    recipe, prepared, model = markov_stream
    on = StreamLM(model.lm, model.answer_ids.tolist(), copy=False, markov=True).eval()
    with torch.no_grad():
        on.markov_scale.fill_(0.7)
    rows = model.lm.get_input_embeddings().weight[model.answer_ids].detach()
    unit = torch.nn.functional.normalize(rows, dim=-1)
    _assert_adds_per_last_item(model, on, _first_windows(prepared), 7.0 * unit @ unit.T)


def test_pair_memory_adds_its_weight_for_each_training_pair_of_the_last_item(pair_stream):
    """Each target's logits gain 10 x w[last item, answer] for the answers that followed its last
    item among the training targets, nothing for the others or for a target with no item before it."""
    recipe, prepared, model = pair_stream
    on = StreamLM(model.lm, model.answer_ids.tolist(), copy=False, pairs=(model.pair_indptr, model.pair_cols)).eval()
    with torch.no_grad():
        on.pair_weight.copy_(model.pair_weight)
    table = torch.zeros(len(model.answer_ids), len(model.answer_ids))
    rows = torch.repeat_interleave(torch.arange(len(model.answer_ids)), torch.diff(model.pair_indptr))
    table[rows, model.pair_cols] = 10 * model.pair_weight.detach()
    expected = _assert_adds_per_last_item(model, on, _first_windows(prepared), table)
    assert (expected != 0).any(), "some targets' last items must have training pairs"


@pytest.mark.parametrize("field", ["markov_path", "pair_memory"])
def test_last_item_paths_are_only_for_next_item_item_tokens(field):
    from pydantic import ValidationError

    for task, model in (("next_action", {}), ("next_item", {"item_tokens": False})):
        with pytest.raises(ValidationError, match=field) as info:
            Recipe.model_validate({"task": {"name": task}, "model": {field: True, **model}})
        assert "expected false" in str(info.value)
