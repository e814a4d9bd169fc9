"""Verbalization: golden texts for every rendering mode, the piece contract, errors, speed."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from evtlm.errors import DataError, RecipeError
from evtlm.ingest.events import finalize_events
from evtlm.recipe import ACTIONS, VerbalizeConfig
from evtlm.text.verbalize import (RELATIVE_BUCKETS, action_label, actor_text, relative_phrases, render_items,
                             verbalize_events, verbalize_user)

TEMPLATE = "{title} ({category}, £{price:.2f})"


@pytest.fixture()
def ev() -> pd.DataFrame:
    """One user, three visits: a cart of the viewed item (shortcut), a re-view after a break."""
    return finalize_events(pd.DataFrame({
        "user_id": ["1"] * 6,
        "timestamp": pd.to_datetime(["2017-11-25 08:26:00", "2017-11-25 08:29:10", "2017-11-25 08:29:40",
                                     "2017-11-27 19:02:00", "2017-11-27 19:05:00", "2017-12-12 09:00:00"], utc=True),
        "action": ["view", "cart", "view", "view", "purchase", "return"],
        "item_id": ["1002", "1002", "7", "7", "1002", "1002"],
        "session_id": ["a", "a", "a", "b", "b", "c"]}))


@pytest.fixture()
def cat() -> pd.DataFrame:
    return pd.DataFrame({"item_id": ["1002", "7"], "title": ["WHITE METAL LANTERN", "RED MUG"],
                         "category": ["Lighting", "Kitchen"], "price": [3.39, 2.5]})


GOLDEN = {
    ("id", "none"): "User 1 viewed Product 1002. added it to cart. viewed Product 7. New visit: viewed Product 7. "
    "bought Product 1002. New visit: returned Product 1002.",
    ("id", "absolute"): "User 1 on 2017-11-25 08:26 viewed Product 1002. On 2017-11-25 08:29 added it to cart. "
    "On 2017-11-25 08:29 viewed Product 7. New visit on 2017-11-27 19:02: viewed Product 7. On 2017-11-27 19:05 "
    "bought Product 1002. New visit on 2017-12-12 09:00: returned Product 1002.",
    ("id", "relative"): "User 1 viewed Product 1002. 3 minutes later added it to cart. Seconds later viewed Product 7. "
    "New visit 2 days later: viewed Product 7. 3 minutes later bought Product 1002. New visit 2 weeks later: "
    "returned Product 1002.",
    ("title", "none"): "User 1 viewed WHITE METAL LANTERN. added it to cart. viewed RED MUG. New visit: viewed RED MUG. "
    "bought WHITE METAL LANTERN. New visit: returned WHITE METAL LANTERN.",
    ("title", "absolute"): "User 1 on 2017-11-25 08:26 viewed WHITE METAL LANTERN. On 2017-11-25 08:29 added it to "
    "cart. On 2017-11-25 08:29 viewed RED MUG. New visit on 2017-11-27 19:02: viewed RED MUG. On 2017-11-27 19:05 "
    "bought WHITE METAL LANTERN. New visit on 2017-12-12 09:00: returned WHITE METAL LANTERN.",
    ("title", "relative"): "User 1 viewed WHITE METAL LANTERN. 3 minutes later added it to cart. Seconds later viewed "
    "RED MUG. New visit 2 days later: viewed RED MUG. 3 minutes later bought WHITE METAL LANTERN. New visit 2 weeks "
    "later: returned WHITE METAL LANTERN.",
    ("template", "none"): "User 1 viewed WHITE METAL LANTERN (Lighting, £3.39). added it to cart. viewed RED MUG "
    "(Kitchen, £2.50). New visit: viewed RED MUG (Kitchen, £2.50). bought WHITE METAL LANTERN (Lighting, £3.39). "
    "New visit: returned WHITE METAL LANTERN (Lighting, £3.39).",
    ("template", "absolute"): "User 1 on 2017-11-25 08:26 viewed WHITE METAL LANTERN (Lighting, £3.39). On "
    "2017-11-25 08:29 added it to cart. On 2017-11-25 08:29 viewed RED MUG (Kitchen, £2.50). New visit on 2017-11-27 "
    "19:02: viewed RED MUG (Kitchen, £2.50). On 2017-11-27 19:05 bought WHITE METAL LANTERN (Lighting, £3.39). New "
    "visit on 2017-12-12 09:00: returned WHITE METAL LANTERN (Lighting, £3.39).",
    ("template", "relative"): "User 1 viewed WHITE METAL LANTERN (Lighting, £3.39). 3 minutes later added it to cart. "
    "Seconds later viewed RED MUG (Kitchen, £2.50). New visit 2 days later: viewed RED MUG (Kitchen, £2.50). 3 minutes "
    "later bought WHITE METAL LANTERN (Lighting, £3.39). New visit 2 weeks later: returned WHITE METAL LANTERN "
    "(Lighting, £3.39).",
}


@pytest.mark.parametrize("item,time_mode", sorted(GOLDEN))
def test_golden_text_for_every_item_and_time_mode(ev, cat, item, time_mode):
    cfg = VerbalizeConfig(item=item, time=time_mode, item_template=TEMPLATE)
    assert verbalize_user(ev, cat, cfg) == GOLDEN[item, time_mode]


def test_without_session_breaks_and_shortcut(ev):
    cfg = VerbalizeConfig(session_breaks=False, repeat_shortcut=False)
    assert verbalize_user(ev.head(4), None, cfg) == (
        "User 1 viewed Product 1002. 3 minutes later added Product 1002 to cart. Seconds later viewed Product 7. "
        "2 days later viewed Product 7.")
    # without breaks the shortcut also spans visits: the item of event 4 repeats event 3's
    assert verbalize_user(ev.head(4), None, VerbalizeConfig(session_breaks=False)).endswith(" 2 days later viewed it.")


def test_custom_actor_verbs_prefix_and_session_phrase(ev):
    cfg = VerbalizeConfig(actor="Shopper #{user_id}:", verbs={"view": "looked at {item}", "cart": "checked out"},
                          item_prefix="SKU", session_phrase="Later visit", time="none")
    # verbs the recipe leaves out keep their defaults; a verb without {item} names no item
    assert verbalize_user(ev.head(5), None, cfg) == (
        "Shopper #1: looked at SKU 1002. checked out. looked at SKU 7. Later visit: looked at SKU 7. bought SKU 1002.")
    assert render_items(pd.Series(["5"]), None, VerbalizeConfig(item_prefix="")).tolist() == ["5"]


def test_pieces_contract(ev, cat):
    for time_mode in ("none", "absolute", "relative"):
        cfg = VerbalizeConfig(time=time_mode)
        text = verbalize_events(ev, cat, cfg)
        assert text.piece.index.equals(ev.index) and text.standalone.index.equals(ev.index)
        for s in list(text.piece) + list(text.standalone):
            assert s.startswith(" ") and not s.startswith("  ") and s.endswith(".")
        assert actor_text(ev["user_id"], cfg).iloc[0] + "".join(text.piece) == verbalize_user(ev, cat, cfg)
        assert text.piece.iloc[0] == text.standalone.iloc[0]  # the first event is written standalone
        for s in text.standalone:  # no reference to an earlier event
            assert " it " not in s and "later" not in s and "New visit" not in s
    alone = verbalize_events(ev, cat, VerbalizeConfig(time="absolute")).standalone
    assert alone.iloc[1] == " on 2017-11-25 08:29 added Product 1002 to cart."


def test_each_user_starts_standalone_and_shortcuts_never_cross_users():
    ev = finalize_events(pd.DataFrame({
        "user_id": ["1", "1", "2", "2"], "action": ["view", "cart", "view", "view"],
        "item_id": ["9", "9", "9", "9"], "session_id": ["a", "a", "b", "b"],
        "timestamp": pd.to_datetime([0, 30, 40, 4000], unit="s", utc=True)}))
    text = verbalize_events(ev, None, VerbalizeConfig())
    assert text.piece.tolist() == [" viewed Product 9.", " Seconds later added it to cart.", " viewed Product 9.",
                                   " An hour later viewed it."]


@pytest.mark.parametrize("gap,words", [
    (0, "seconds later"), (59, "seconds later"), (60, "a minute later"), (89, "a minute later"),
    (90, "2 minutes later"), (150, "3 minutes later"), (3569, "59 minutes later"), (3570, "an hour later"),
    (5399, "an hour later"), (5400, "2 hours later"), (84599, "23 hours later"), (84600, "the next day"),
    (172799, "the next day"), (172800, "2 days later"), (13 * 86400, "13 days later"),
    (13.5 * 86400, "2 weeks later"), (59 * 86400, "8 weeks later"), (59.5 * 86400, "2 months later"),
    (729 * 86400, "24 months later"), (730 * 86400, "2 years later"), (5 * 10**9, "99 years later"),
])
def test_relative_buckets(gap, words):
    ev = finalize_events(pd.DataFrame({"user_id": ["1", "1"], "action": ["view", "cart"], "item_id": ["1", "2"],
                                       "timestamp": pd.to_datetime([0, gap], unit="s", utc=True)}))
    piece = verbalize_events(ev, None, VerbalizeConfig(session_breaks=False)).piece.iloc[1]
    assert piece == f" {words[0].upper()}{words[1:]} added Product 2 to cart."


def test_relative_phrase_table_is_one_table():
    phrases, offset, lo, hi = relative_phrases()
    assert len(offset) == len(RELATIVE_BUCKETS) and len(set(phrases)) == len(phrases)
    assert all(n >= 2 for n, u in zip(lo, RELATIVE_BUCKETS) if u[1])  # plurals always right


def test_absolute_time_zone_and_format(ev):
    cfg = VerbalizeConfig(time="absolute", timezone="Asia/Shanghai", absolute_format="%d %b %H:%M:%S")
    assert verbalize_user(ev.head(2), None, cfg) == (
        "User 1 on 25 Nov 16:26:00 viewed Product 1002. On 25 Nov 16:29:10 added it to cart.")
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Base' in verbalize.timezone"):
        VerbalizeConfig(time="absolute", timezone="Mars/Base")  # at recipe load, before any text is built


def test_item_rendering_fallbacks_and_null_items(cat):
    cat = pd.concat([cat, pd.DataFrame({"item_id": ["8"], "title": [None], "category": ["Toys"], "price": [None]})])
    ids = pd.Series(["7", "8", "99", None], dtype="string")
    assert render_items(ids, cat, VerbalizeConfig(item="title")).tolist() == ["RED MUG", "Product 8", "Product 99", "an item"]
    assert render_items(ids, None, VerbalizeConfig(item="title")).tolist()[:2] == ["Product 7", "Product 8"]
    got = render_items(ids, cat, VerbalizeConfig(item="template", item_template=TEMPLATE)).tolist()
    assert got == ["RED MUG (Kitchen, £2.50)", "Product 8", "Product 99", "an item"]  # null field -> id form
    labels = " " + render_items(pd.Series(["7", "1002"]), cat, VerbalizeConfig(item="title"))
    assert labels.tolist() == [" RED MUG", " WHITE METAL LANTERN"]


def test_template_errors_name_the_field_item_and_fix(ev, cat):
    with pytest.raises(DataError) as err:
        verbalize_events(ev, cat, VerbalizeConfig(item="template", item_template="{title} by {brand}"))
    msg = str(err.value)
    assert "{brand} is not a catalog column" in msg and "item_id, title, category, price" in msg
    with pytest.raises(DataError, match="needs a catalog"):
        verbalize_events(ev, None, VerbalizeConfig(item="template"))
    bad = cat.assign(price=["cheap", "dear"])
    with pytest.raises(DataError, match=r"cannot format item '1002' \(category='Lighting', price='cheap', title="):
        verbalize_events(ev, bad, VerbalizeConfig(item="template", item_template=TEMPLATE))
    with pytest.raises(RecipeError, match="verbalize.item_template"):
        verbalize_events(ev, cat, VerbalizeConfig(item="template", item_template="{title"))


def test_bad_verb_and_actor_templates(ev):
    with pytest.raises(RecipeError, match=r"may only use \{item\}.*verbalize.verbs.view"):
        verbalize_events(ev, None, VerbalizeConfig(verbs={"view": "viewed {item} at {price}"}))
    with pytest.raises(RecipeError, match="verbalize.actor"):
        actor_text(ev["user_id"], VerbalizeConfig(actor="{name}"))


def test_events_out_of_order_or_unknown_are_errors(ev):
    shuffled = ev.iloc[[1, 0, 2, 3, 4, 5]].reset_index(drop=True)
    with pytest.raises(DataError, match=r"not in canonical order.*row 2 \(1 row\).*finalize_events"):
        verbalize_events(shuffled, None, VerbalizeConfig())
    split = pd.concat([ev.head(2).assign(user_id="1"), ev.head(1).assign(user_id="2"), ev.tail(1).assign(user_id="1")])
    with pytest.raises(DataError, match="not contiguous"):
        verbalize_events(split.reset_index(drop=True), None, VerbalizeConfig())
    with pytest.raises(DataError, match="lack column"):
        verbalize_events(ev.drop(columns="item_id"), None, VerbalizeConfig())
    with pytest.raises(DataError, match="exactly one user"):
        verbalize_user(split, None, VerbalizeConfig())


def test_action_labels_are_distinct_bare_verbs():
    cfg = VerbalizeConfig()
    labels = [action_label(a, cfg) for a in ACTIONS]
    assert labels == ["viewed", "added to cart", "removed from cart", "saved", "bought", "returned"]
    assert len({lab.split()[0] for lab in labels}) == len(labels)  # first words differ: one-token decisions
    with pytest.raises(DataError, match="did you mean 'purchase'"):
        action_label("purchas", cfg)


def test_pieces_tokenize_separately_like_the_whole_text(ev, cat, tokenizer_dir):
    from tokenizers import Tokenizer  # the fast tokenizer itself: no transformers import (seconds)

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    for item in ("id", "template"):
        cfg = VerbalizeConfig(item=item, item_template=TEMPLATE)
        text = verbalize_events(ev, cat, cfg)
        actor = actor_text(ev["user_id"].iloc[:1], cfg).iloc[0]
        ids = [tok.encode(s, add_special_tokens=False).ids for s in [actor, *text.piece]]
        whole = tok.encode(actor + "".join(text.piece), add_special_tokens=False).ids
        assert sum(ids, []) == whole and len(whole) > 20


def test_a_million_events_in_a_few_seconds():
    rng = np.random.default_rng(0)
    n = 1_000_000
    users = np.sort(rng.integers(0, 20_000, n))
    t = np.cumsum(rng.integers(1, 4000, n))  # increasing, so in order within every user
    ev = pd.DataFrame({"user_id": users.astype(str), "timestamp": pd.to_datetime(t, unit="s", utc=True),
                       "action": pd.Categorical.from_codes(rng.integers(0, 6, n), categories=list(ACTIONS)),
                       "item_id": rng.integers(0, 5000, n).astype(str),
                       "session_id": (users * 100 + t // 20_000 % 100).astype(str)})
    ev = ev.sort_values("user_id", kind="stable").reset_index(drop=True)
    cat = pd.DataFrame({"item_id": np.arange(5000).astype(str), "title": [f"Thing {i}" for i in range(5000)],
                        "category": "Toys", "price": 9.99})
    t0 = time.perf_counter()
    text = verbalize_events(ev, cat, VerbalizeConfig(item="template", item_template=TEMPLATE))
    elapsed = time.perf_counter() - t0
    assert len(text.piece) == n and text.piece.str.endswith(".").all()
    assert elapsed < 15, elapsed  # ~2 s alone; generous for a shared 2-core machine


def test_amounts_enter_the_text_as_the_trees_count_them(ev, cat):
    """``verbalize.amount``: price x quantity on the chosen actions, the catalog price where the
    events have none; the gbt's ``spend`` (evtlm.data.history) reads the same amounts."""
    from evtlm.data.history import HistoryIndex, rfm_features

    cfg = VerbalizeConfig(time="none", amount=" ({quantity:g} for £{amount:.2f})")
    text = verbalize_events(ev, cat, cfg).piece.tolist()
    assert text[1] == " added it to cart (1 for £3.39)."  # no event prices: the catalog's, quantity 1
    assert text[4] == " bought Product 1002 (1 for £3.39)." and text[0] == " viewed Product 1002."
    priced = ev.assign(price=[3.0, 3.0, 2.5, 2.5, 4.0, 4.0], quantity=[1, 1, 1, 1, 3, -3])
    text = verbalize_events(priced, None, cfg).piece.tolist()
    assert text[4] == " bought Product 1002 (3 for £12.00)." and text[5] == " New visit: returned Product 1002 (-3 for £-12.00)."
    alone = verbalize_events(priced, None, cfg).standalone.tolist()
    assert alone[4] == " bought Product 1002 (3 for £12.00)."
    # a view is not priced by default; amount_actions chooses
    assert verbalize_events(priced, None, cfg.model_copy(update={"amount_actions": ["view"]})).piece[0] == \
        " viewed Product 1002 (1 for £3.00)."
    idx = HistoryIndex(priced)
    spend = rfm_features(idx, *idx.bounds(["1"], [pd.Timestamp("2018-01-01", tz="UTC")]),
                         [pd.Timestamp("2018-01-01", tz="UTC")])["spend"]
    assert spend.tolist() == [12.0]  # the purchase's 3 x 4.00; the return is not spend


def test_amount_template_errors_at_load():
    with pytest.raises(ValueError, match=r"KeyError: 'cost'.*use only \{price\}, \{quantity\} and \{amount\}"):
        VerbalizeConfig(amount=" for {cost}")
    with pytest.raises(ValueError, match="Unknown format code 'd'"):
        VerbalizeConfig(amount=" for {amount:d}")
