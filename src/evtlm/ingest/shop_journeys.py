"""Visits of the synthetic shop, simulated for all sessions at once (rules 1-4 and 7 of
`evtlm.ingest.simulate`).

A visit is a small state machine: the current item, the last action, the cart (up to
``CART_SLOTS`` items) and a phase (browsing, checking out, just checked out). The loop below runs
over *steps* (at most ``MAX_EVENTS`` per visit), never over sessions: each iteration advances
every visit that is still open with a handful of numpy operations, and closed visits leave the
active set, so the work is proportional to the number of events.

>>> from evtlm.ingest.shop_catalog import build_catalog
>>> rng = np.random.default_rng(0)
>>> cat = build_catalog(rng, n_items=20, n_categories=2)
>>> ev = simulate_journeys(rng, cat, np.array([0, 0, 1]), np.zeros((2, 2)), np.ones(2), np.zeros(2))
>>> sorted(ev)
['abandoned', 'action', 'item', 'sess', 'step', 't']
>>> [int(a) for a in ev["action"][ev["step"] == 0]]   # every visit opens with a view
[0, 0, 0]
"""

from __future__ import annotations

import numpy as np

from evtlm.ingest.shop_catalog import Catalog

VIEW, CART, REMOVE, FAVORITE, PURCHASE = range(5)  # indices into evtlm.recipe.ACTIONS
BROWSE, CHECKOUT, PAID = 0, 1, 2  # visit phases
CART_SLOTS = 16
MAX_EVENTS = 80
CATEGORY_STAY = 0.7
CART_LOGIT = (-2.8, 0.8, 0.8, 0.3)  # intercept, log affinity, sensitivity x relative log price, engagement
CHECKOUT_LOGIT = (-4.2, 0.7, 0.5, 0.4)  # intercept, carts so far, mean log affinity in cart, engagement
END_LOGIT = (-2.3, 0.25)  # intercept, engagement (engaged users browse longer)
END_AFTER_CHECKOUT = 0.75
FAVORITE_P = 0.04
REMOVE_P = 0.06
# gap before an event of each kind: (median seconds, log sigma, min, max)
GAPS = {VIEW: (35, 0.9, 3, 1200), CART: (12, 0.6, 2, 300), FAVORITE: (12, 0.6, 2, 300),
        REMOVE: (20, 0.6, 2, 300), PURCHASE: (60, 0.5, 10, 600)}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _gaps(rng: np.random.Generator, kind: int, n: int) -> np.ndarray:
    median, sigma, lo, hi = GAPS[kind]
    return np.clip(np.rint(rng.lognormal(np.log(median), sigma, n)), lo, hi).astype(np.int64)


def simulate_journeys(rng: np.random.Generator, catalog: Catalog, sess_user: np.ndarray,
                      log_aff: np.ndarray, sens: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
    """Events of every visit, times relative to the visit's start.

    ``sess_user`` [S]: the user of each visit; ``log_aff`` [U, C], ``sens`` [U], ``z`` [U]: the
    users' latent traits. Returns flat arrays ``sess, step, t, action, item`` sorted by
    ``(sess, step)`` and ``abandoned`` [S]: the last item left in the cart (-1: none).
    """
    S = sess_user.size
    pref_cdf = np.cumsum(np.exp(log_aff), axis=1)
    pref_cdf /= pref_cdf[:, -1:]  # [U, C] each user's category CDF

    def draw_category(users: np.ndarray) -> np.ndarray:
        u = rng.random(users.size)[:, None]
        return np.minimum((pref_cdf[users] < u).sum(axis=1), pref_cdf.shape[1] - 1)

    item = catalog.draw_items(rng, draw_category(sess_user))  # [S] current item
    last = np.full(S, VIEW)  # last action
    phase = np.full(S, BROWSE)
    cart = np.full((S, CART_SLOTS), -1)
    cart_n = np.zeros(S, np.int64)  # items in the cart now
    cart_aff = np.zeros(S)  # sum of log affinity of the items in the cart
    carts = np.zeros(S, np.int64)  # cart events so far in the visit
    paid = np.zeros(S, np.int64)  # checkout position
    abandoned = np.full(S, -1)
    out: list[tuple[np.ndarray, ...]] = [(np.arange(S), np.zeros(S, np.int64), np.zeros(S, np.int64),
                                          np.full(S, VIEW), item.copy())]
    active = np.arange(S)

    def emit(s: np.ndarray, step: int, kind: int, items: np.ndarray, gaps: np.ndarray | None = None) -> None:
        g = _gaps(rng, kind, s.size) if gaps is None else gaps
        out.append((s, np.full(s.size, step), g, np.full(s.size, kind), items))
        item[s], last[s] = items, kind

    for step in range(1, MAX_EVENTS):
        if active.size == 0:
            break
        # -- visits in checkout: buy the next cart item, seconds after the previous one
        in_checkout = phase[active] == CHECKOUT
        co, b = active[in_checkout], active[~in_checkout]  # b: browsing visits, decided below
        if co.size:
            emit(co, step, PURCHASE, cart[co, paid[co]], rng.integers(1, 4, co.size))
            paid[co] += 1
            done = co[paid[co] >= cart_n[co]]
            cart[done], cart_n[done], cart_aff[done], phase[done] = -1, 0, 0.0, PAID
        # -- browsing visits: one decision each among cart, favorite, checkout, remove, end, view
        u = sess_user[b]
        it = item[b]
        la = log_aff[u, catalog.item_category[it]]
        viewed = (last[b] == VIEW) & ~(cart[b] == it[:, None]).any(axis=1) & (cart_n[b] < CART_SLOTS)
        c0, c1, c2, c3 = CART_LOGIT
        p_cart = np.where(viewed, _sigmoid(c0 + c1 * la - c2 * sens[u] * catalog.rel_log_price[it] + c3 * z[u]), 0.0)
        p_fav = np.where(last[b] == VIEW, FAVORITE_P, 0.0)
        has = cart_n[b] > 0
        k0, k1, k2, k3 = CHECKOUT_LOGIT
        mean_aff = cart_aff[b] / np.maximum(cart_n[b], 1)
        p_check = np.where(has, _sigmoid(k0 + k1 * carts[b] + k2 * mean_aff + k3 * z[u]), 0.0)
        p_remove = np.where(has, REMOVE_P, 0.0)
        p_end = np.where(phase[b] == PAID, END_AFTER_CHECKOUT, _sigmoid(END_LOGIT[0] - END_LOGIT[1] * z[u]))
        # one uniform per visit against the cumulative thresholds of the options taken in turn:
        # option k is chosen with probability p_k * prod_{j<k} (1 - p_j)
        r = rng.random(b.size)
        choice = np.zeros(b.size, np.int64)
        covered = np.zeros(b.size)
        for p in (p_cart, p_fav, p_check, p_remove, p_end):
            covered = covered + (1.0 - covered) * p
            choice += r >= covered
        phase[b[phase[b] == PAID]] = BROWSE
        # 0: cart the current item
        s = b[choice == 0]
        cart[s, cart_n[s]] = item[s]
        cart_aff[s] += la[choice == 0]
        cart_n[s] += 1
        carts[s] += 1
        emit(s, step, CART, item[s])
        # 1: favorite it
        s = b[choice == 1]
        emit(s, step, FAVORITE, item[s])
        # 2: checkout: the first purchase now, the rest in the next steps
        s = b[choice == 2]
        emit(s, step, PURCHASE, cart[s, 0])
        paid[s] = 1
        phase[s] = CHECKOUT
        done = s[cart_n[s] == 1]
        cart[done], cart_n[done], cart_aff[done], phase[done] = -1, 0, 0.0, PAID
        # 3: remove the most recent cart item (it becomes the current item)
        s = b[choice == 3]
        cart_n[s] -= 1
        removed = cart[s, cart_n[s]]
        cart[s, cart_n[s]] = -1
        cart_aff[s] -= log_aff[sess_user[s], catalog.item_category[removed]]
        emit(s, step, REMOVE, removed)
        # 5: view another item, in the same category with probability CATEGORY_STAY (rule 1)
        s = b[choice == 5]
        cats = catalog.item_category[item[s]]
        move = rng.random(s.size) >= CATEGORY_STAY
        cats[move] = draw_category(sess_user[s[move]])
        emit(s, step, VIEW, catalog.draw_items(rng, cats))
        # 4: end the visit; what is left in the cart is abandoned
        ended = b[choice == 4]
        abandoned[ended] = np.where(cart_n[ended] > 0, cart[ended, np.maximum(cart_n[ended] - 1, 0)], -1)
        active = np.concatenate([co, b[choice != 4]])
        active.sort()
    # visits still open after MAX_EVENTS end here
    abandoned[active] = np.where(cart_n[active] > 0, cart[active, np.maximum(cart_n[active] - 1, 0)], -1)

    sess, step_no, gap, action, items = (np.concatenate(col) for col in zip(*out))
    order = np.argsort(sess, kind="stable")  # emitted step by step: stable keeps step order
    sess, step_no, gap, action, items = sess[order], step_no[order], gap[order], action[order], items[order]
    first = np.r_[True, sess[1:] != sess[:-1]]
    gap[first] = 0
    total = np.cumsum(gap)
    t = total - np.repeat(total[first], np.diff(np.r_[np.flatnonzero(first), sess.size]))  # per-visit cumsum
    return {"sess": sess, "step": step_no, "t": t, "action": action, "item": items, "abandoned": abandoned}
