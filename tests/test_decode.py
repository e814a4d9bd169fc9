"""Constrained decoding: answers are label-space members, batched == unbatched, beams == exhaustive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from evtlm.decode.methods import (
    beam_search_items,
    candidate_token_ids,
    closed_set_probs,
    decode_items,
    first_token_probs,
    left_pad,
    sequence_logprobs,
    top_k_from_scores,
)
from evtlm.decode.trie import ItemTrie, TrieLogitsProcessor
from evtlm.errors import TaskError

SMALL_VOCAB = 64


def tiny_gpt2(vocab_size: int, seed: int = 0, n_embd: int = 32) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=n_embd, vocab_size=vocab_size, n_positions=128,
                     bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread than on two contended ones; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> GPT2LMHeadModel:
    return tiny_gpt2(SMALL_VOCAB)


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    """A real byte-level BPE: the in-process one, and GPT-2's where ../shared has it (conftest)."""
    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="module")
def bpe_model(tok) -> GPT2LMHeadModel:
    # the tokenizer's whole vocabulary with a tiny body: what a test needs to see real BPE item strings
    return tiny_gpt2(len(tok), seed=1, n_embd=16)


def random_prompts(n: int, vocab: int, seed: int = 0, max_len: int = 20) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab - 1, size=int(rng.integers(1, max_len))).tolist() for _ in range(n)]


def reference_logprob(model, prompt: list[int], cand: list[int]) -> float:
    """log P(cand | prompt) from one unpadded forward pass: the independent reference."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + cand])).logits[0]
    lp = torch.log_softmax(logits.double(), -1)
    return float(sum(lp[len(prompt) - 1 + j, t] for j, t in enumerate(cand)))


CATALOG = [[5], [6, 7], [6, 8], [6, 8, 9], [10, 11, 12], [10, 11, 13], [14, 7]]  # [6, 8] prefixes [6, 8, 9]


# --------------------------------------------------------------------------------------- padding


def test_left_pad_counts_positions_from_first_real_token():
    ids, mask, pos = left_pad([[1, 2], [3, 4, 5, 6], [7]], pad_id=9)
    assert ids.tolist() == [[9, 9, 1, 2], [3, 4, 5, 6], [9, 9, 9, 7]]
    assert mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]]
    assert pos[:, -1].tolist() == [1, 3, 0]


def test_first_token_probs_batched_equals_one_by_one(model):
    prompts = random_prompts(11, SMALL_VOCAB)
    cands = [[3], [4, 9], [20]]
    batched = first_token_probs(model, prompts, cands, batch_size=4)
    single = np.vstack([first_token_probs(model, [p], cands, batch_size=1) for p in prompts])
    np.testing.assert_allclose(batched, single, atol=1e-4)
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, atol=1e-9)
    # = the renormalised next-token distribution of an unpadded forward pass
    ref = np.array([[reference_logprob(model, p, [c[0]]) for c in cands] for p in prompts])
    np.testing.assert_allclose(batched, np.exp(ref) / np.exp(ref).sum(1, keepdims=True), atol=1e-4)


def test_first_token_probs_rejects_shared_first_tokens(model):
    with pytest.raises(TaskError, match=r"candidates \[0, 1\] share their first token.*decode.method: sequence"):
        first_token_probs(model, [[1, 2]], [[3, 4], [3, 5], [6]])


def test_bad_token_ids_and_empty_prompts_are_named(model):
    with pytest.raises(TaskError, match=r"prompt 1 holds token id 999, outside the model's vocabulary of 64"):
        first_token_probs(model, [[1], [2, 999]], [[3], [4]])
    with pytest.raises(TaskError, match="prompt 0 is empty"):
        sequence_logprobs(model, [[]], [[3]])
    assert first_token_probs(model, [], [[3], [4]]).shape == (0, 2)


# ----------------------------------------------------------------------------- sequence scoring


def test_sequence_logprobs_exact_batched_and_cached(model):
    prompts = random_prompts(9, SMALL_VOCAB, seed=3)
    cached = sequence_logprobs(model, prompts, CATALOG, batch_size=4)
    plain = sequence_logprobs(model, prompts, CATALOG, batch_size=3, use_cache=False)
    single = np.vstack([sequence_logprobs(model, [p], CATALOG, batch_size=1) for p in prompts])
    ref = np.array([[reference_logprob(model, p, c) for c in CATALOG] for p in prompts])
    np.testing.assert_allclose(cached, ref, atol=1e-4)
    np.testing.assert_allclose(plain, ref, atol=1e-4)
    np.testing.assert_allclose(single, ref, atol=1e-4)
    # tiny chunks (one candidate per forward) give the same numbers
    np.testing.assert_allclose(sequence_logprobs(model, prompts, CATALOG, max_tokens=1), ref, atol=1e-4)


def test_sequence_logprobs_end_id_adds_the_end_token(model):
    prompts, eos = random_prompts(4, SMALL_VOCAB, seed=4), SMALL_VOCAB - 1
    with_end = sequence_logprobs(model, prompts, CATALOG, end_id=eos)
    ref = np.array([[reference_logprob(model, p, c + [eos]) for c in CATALOG] for p in prompts])
    np.testing.assert_allclose(with_end, ref, atol=1e-4)


def test_closed_set_probs_methods(model):
    prompts = random_prompts(5, SMALL_VOCAB, seed=10)
    distinct, shared = [[3], [4, 9], [20]], [[3, 4], [3, 5], [20]]
    np.testing.assert_allclose(closed_set_probs(model, prompts, distinct), first_token_probs(model, prompts, distinct))
    lp = sequence_logprobs(model, prompts, shared, end_id=SMALL_VOCAB - 1)
    want = np.exp(lp) / np.exp(lp).sum(1, keepdims=True)
    got = closed_set_probs(model, prompts, shared, end_id=SMALL_VOCAB - 1)  # auto -> sequence
    np.testing.assert_allclose(got, want, atol=1e-9)
    np.testing.assert_allclose(closed_set_probs(model, prompts, distinct, method="sequence").sum(1), 1.0)
    with pytest.raises(TaskError, match="decode.method 'beam' cannot score a closed label set"):
        closed_set_probs(model, prompts, distinct, method="beam")


def test_decoding_restores_training_mode(model):
    model.train()
    try:
        sequence_logprobs(model, [[1, 2]], CATALOG)
        assert model.training
    finally:
        model.eval()


# ------------------------------------------------------------------------------------- the trie


def test_trie_walks_every_item_to_its_own_terminal_node():
    trie = ItemTrie.build(CATALOG)
    padded = torch.tensor([c + [c[-1]] * (3 - len(c)) for c in CATALOG])
    for length in (1, 2, 3):  # items of this length end at their own node
        rows = [i for i, c in enumerate(CATALOG) if len(c) == length]
        nodes = trie.walk(padded[rows, :length])
        assert trie.terminal_item[nodes].tolist() == rows
    assert trie.walk(torch.tensor([[6, 9], [99, 1]])).tolist() == [-1, -1]


def test_trie_rejects_duplicates_and_empty_items():
    with pytest.raises(TaskError, match=r"candidates \[0, 2\] have identical token ids \[4, 5\]"):
        ItemTrie.build([[4, 5], [6], [4, 5]])
    with pytest.raises(TaskError, match=r"candidates \[1\] have no tokens"):
        ItemTrie.build([[4], []])


def test_processor_allows_children_and_end_marker_only():
    trie = ItemTrie.build(CATALOG)
    end = 63
    proc = TrieLogitsProcessor(trie, prompt_width=2, num_beams=1, end_id=end, exclude=[[3], [3], [3]])
    ids = torch.tensor([[1, 1, 6, 8], [1, 1, 10, 11], [1, 1, 14, 9]])  # prefixes [6 8], [10 11], invalid
    scores = torch.log_softmax(torch.randn(3, SMALL_VOCAB), -1)
    out = proc(ids, scores)
    allowed = [set(torch.isfinite(row).nonzero().flatten().tolist()) for row in out]
    assert allowed == [{end}, {12, 13}, set()]  # [6 8 9] excluded: only "end" ([6 8]) remains
    assert out[0, end] == 0.0  # an unscored end marker costs nothing
    torch.testing.assert_close(out[1, [12, 13]], scores[1, [12, 13]])


# ------------------------------------------------------------------------------------ beam search


def exact_top_k(model, prompts, catalog, k, exclude=None, end_id=None):
    return top_k_from_scores(sequence_logprobs(model, prompts, catalog, end_id=end_id), k, exclude)


def test_beam_search_is_exact_with_enough_beams_and_batched_equals_single(model):
    # num_beams >= catalog size: no prefix is ever pruned, so beams == exhaustive scoring
    prompts = random_prompts(7, SMALL_VOCAB, seed=5)
    idx, scores = beam_search_items(model, prompts, CATALOG, top_k=5, num_beams=len(CATALOG), batch_size=3)
    ex_idx, ex_scores = exact_top_k(model, prompts, CATALOG, 5)
    np.testing.assert_array_equal(idx, ex_idx)
    np.testing.assert_allclose(scores, ex_scores, atol=1e-4)
    one = [beam_search_items(model, [p], CATALOG, top_k=5, num_beams=len(CATALOG), batch_size=1) for p in prompts]
    np.testing.assert_array_equal(np.vstack([o[0] for o in one]), idx)
    np.testing.assert_allclose(np.vstack([o[1] for o in one]), scores, atol=1e-4)


def test_beam_search_exclusion_and_end_id(model):
    prompts = random_prompts(5, SMALL_VOCAB, seed=6)
    exclude = [[3], [0, 1, 2], [], [4, 5], list(range(6))]  # the last leaves a single item
    eos = SMALL_VOCAB - 1
    idx, scores = beam_search_items(model, prompts, CATALOG, top_k=3, num_beams=7, exclude=exclude, end_id=eos)
    ex_idx, ex_scores = exact_top_k(model, prompts, CATALOG, 3, exclude, end_id=eos)
    np.testing.assert_array_equal(idx, ex_idx)
    np.testing.assert_allclose(scores, ex_scores, atol=1e-4)
    assert idx[4].tolist() == [6, -1, -1] and np.isneginf(scores[4, 1:]).all()  # padded, never invented
    for row, banned in zip(idx, exclude):
        assert not set(row.tolist()) & set(banned)


def test_single_beam_is_greedy_with_exact_scores(model):
    prompts = random_prompts(6, SMALL_VOCAB, seed=9)
    idx, scores = beam_search_items(model, prompts, CATALOG, top_k=1, num_beams=1, exclude=[[0]] * 6)
    exact = sequence_logprobs(model, prompts, CATALOG)
    assert ((idx[:, 0] >= 1) & (idx[:, 0] < len(CATALOG))).all()
    np.testing.assert_allclose(scores[:, 0], exact[np.arange(6), idx[:, 0]], atol=1e-4)


def test_beam_search_argument_errors(model):
    with pytest.raises(TaskError, match=r"num_beams \(3\) < top_k \(5\).*at least 5"):
        beam_search_items(model, [[1]], CATALOG, top_k=5, num_beams=3)
    with pytest.raises(TaskError, match="exclude holds item index 7, outside the catalog of 7"):
        beam_search_items(model, [[1]], CATALOG, top_k=2, num_beams=4, exclude=[[7]])
    with pytest.raises(TaskError, match="exclude has 2 entries for 1 prompts"):
        beam_search_items(model, [[1]], CATALOG, top_k=2, num_beams=4, exclude=[[1], [2]])
    with pytest.raises(TaskError, match="end marker token 7 .* occurs inside a candidate"):
        beam_search_items(model, [[1]], CATALOG, top_k=2, num_beams=4, end_id=7)


def test_decode_items_switches_to_beams_for_large_catalogs(model):
    prompts = random_prompts(4, SMALL_VOCAB, seed=7)
    small = decode_items(model, prompts, CATALOG, top_k=3, num_beams=7, exhaustive_max_items=100)
    beams = decode_items(model, prompts, CATALOG, top_k=3, num_beams=7, exhaustive_max_items=2)
    np.testing.assert_array_equal(small[0], beams[0])
    np.testing.assert_allclose(small[1], beams[1], atol=1e-4)


def test_beam_search_through_a_lora_model(model):
    peft = pytest.importorskip("peft")
    lora = peft.get_peft_model(tiny_gpt2(SMALL_VOCAB), peft.LoraConfig(r=2, target_modules=["c_attn"],
                                                                     fan_in_fan_out=True))
    prompts = random_prompts(3, SMALL_VOCAB, seed=8)
    idx, scores = beam_search_items(lora, prompts, CATALOG, top_k=4, num_beams=7)
    ex_idx, ex_scores = exact_top_k(lora, prompts, CATALOG, 4)
    np.testing.assert_array_equal(idx, ex_idx)
    np.testing.assert_allclose(scores, ex_scores, atol=1e-4)


# ------------------------------------------------------------ real byte-level BPE, property tests


def test_leading_space_items(tok, bpe_model):
    labels = [" Product 100", " Product 1002", " Product 1003", " Product 2002"]
    ids = candidate_token_ids(tok, labels)
    pieces = [tok.convert_ids_to_tokens(c) for c in ids]
    assert all(p[0] == "ĠProduct" for p in pieces)  # the leading space is part of the first token
    assert len(set(map(tuple, ids))) == 4 and max(map(len, ids)) > 2  # distinct, some multi-token
    if len(tok) == 50257:  # GPT-2's own merges
        assert pieces[1] == ["ĠProduct", "Ġ100", "2"]
        assert ids[0] == ids[1][:2]  # " Product 100" is a prefix of " Product 1002": the end marker separates them
    prompt = tok("User 1 viewed Product 1002. User 1 viewed")["input_ids"]
    idx, scores = beam_search_items(bpe_model, [prompt], ids, top_k=4, num_beams=4, end_id=tok.eos_token_id)
    assert sorted(idx[0].tolist()) == [0, 1, 2, 3]
    exact = sequence_logprobs(bpe_model, [prompt], ids, end_id=tok.eos_token_id)[0]
    np.testing.assert_allclose(scores[0], np.sort(exact)[::-1], atol=1e-4)
    assert [labels[i] for i in idx[0]] == [tok.decode(ids[i]) for i in idx[0]]


WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDE", min_size=1, max_size=7)
LABEL = st.one_of(
    st.integers(0, 99999).map(lambda n: f" Product {n}"),
    st.sampled_from([" yes", " no", " viewed", " added to cart", " purchased"]),
    WORDS.map(lambda w: " " + w),
    st.lists(WORDS, min_size=2, max_size=3).map(lambda ws: " " + " ".join(ws)),
)
SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def unique_labels(tok, labels):
    """Drop labels that tokenize like an earlier one (a label space has distinct token sequences)."""
    seen, out = set(), []
    for lab in labels:
        key = tuple(tok(lab, add_special_tokens=False)["input_ids"])
        if key not in seen:
            seen.add(key)
            out.append(lab)
    return out


@SETTINGS
@given(labels=st.lists(LABEL, min_size=2, max_size=14, unique=True), n_beams=st.integers(1, 6), seed=st.integers(0, 99))
def test_property_every_decoded_answer_is_a_label(tok, bpe_model, labels, n_beams, seed):
    labels = unique_labels(tok, labels)
    ids = candidate_token_ids(tok, labels)
    prompts = random_prompts(2, len(tok), seed=seed, max_len=12)
    k = min(n_beams, 3)
    idx, scores = beam_search_items(bpe_model, prompts, ids, top_k=k, num_beams=n_beams)
    for row, sc in zip(idx, scores):
        found = [i for i in row.tolist() if i >= 0]
        assert len(found) == min(k, len(labels))  # beams always find enough distinct labels
        assert len(set(found)) == len(found)
        decoded = [tok.decode(ids[i]) for i in found]
        assert all(d in labels for d in decoded)
        assert np.all(np.diff(sc[: len(found)]) <= 1e-6)  # best first
    if len({c[0] for c in ids}) == len(ids):
        probs = first_token_probs(bpe_model, prompts, ids)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)


@SETTINGS
@given(labels=st.lists(LABEL, min_size=2, max_size=10, unique=True), seed=st.integers(0, 99), data=st.data())
def test_property_beams_equal_exhaustive_top_k(tok, bpe_model, labels, seed, data):
    # with num_beams >= catalog size the trie beam search is exact (no prefix is ever pruned)
    ids = candidate_token_ids(tok, unique_labels(tok, labels))
    prompts = random_prompts(2, len(tok), seed=seed, max_len=10)
    k = data.draw(st.integers(1, len(ids)))
    exclude = data.draw(st.lists(st.lists(st.integers(0, len(ids) - 1), max_size=2), min_size=2, max_size=2))
    idx, scores = beam_search_items(bpe_model, prompts, ids, top_k=k, num_beams=len(ids), exclude=exclude)
    exact = sequence_logprobs(bpe_model, prompts, ids)
    ex_idx, ex_scores = top_k_from_scores(exact, k, exclude)
    np.testing.assert_allclose(scores, ex_scores, atol=1e-4)
    # indices agree up to exact ties: each returned item's own exhaustive score is its beam score
    found = idx >= 0
    assert np.array_equal(found, ex_idx >= 0)
    np.testing.assert_allclose(exact[np.nonzero(found)[0], idx[found]], scores[found], atol=1e-4)
