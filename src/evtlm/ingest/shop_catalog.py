"""The synthetic shop's catalog: categories, titles from word lists, brands, log-normal prices.

Split out of `evtlm.ingest.simulate` (which builds users and journeys on top of it) so that each module
stays short. Everything is drawn from one ``numpy.random.Generator``, so a seed fixes the catalog.

>>> rng = np.random.default_rng(0)
>>> cat = build_catalog(rng, n_items=30, n_categories=3)
>>> cat.table.columns.tolist()
['item_id', 'title', 'category', 'brand', 'price']
>>> sorted(cat.table["category"].unique().tolist())
['Garden', 'Kitchen', 'Toys']
>>> bool(cat.table["title"].is_unique), bool((cat.table["price"] > 0).all())
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# (category, median price in £, nouns). The median sets the category's log-normal price scale.
CATEGORIES: tuple[tuple[str, float, str], ...] = (
    ("Kitchen", 18, "Mug, Kettle, Skillet, Teapot, Colander, Grater, Cutting Board"),
    ("Garden", 25, "Planter, Trowel, Hose, Lantern, Birdhouse, Watering Can"),
    ("Toys", 15, "Puzzle, Robot, Kite, Yo-Yo, Building Set, Plush Bear"),
    ("Books", 12, "Cookbook, Atlas, Novel, Field Guide, Poetry Collection, Storybook"),
    ("Beauty", 14, "Lip Balm, Face Cream, Hairbrush, Soap Bar, Perfume, Nail Kit"),
    ("Sports", 30, "Yoga Mat, Dumbbell, Football, Water Bottle, Tennis Racket, Skipping Rope"),
    ("Electronics", 60, "Headphones, Speaker, Charger, Keyboard, Mouse, Webcam"),
    ("Home Decor", 22, "Vase, Cushion, Picture Frame, Candle, Wall Clock, Throw"),
    ("Pet Supplies", 16, "Dog Bed, Cat Toy, Leash, Feeder, Pet Brush, Scratching Post"),
    ("Stationery", 6, "Notebook, Pen Set, Pencil Case, Planner, Sticky Notes, Envelope Pack"),
    ("Apparel", 28, "T-Shirt, Scarf, Hoodie, Socks, Rain Jacket, Beanie"),
    ("Footwear", 45, "Sneakers, Sandals, Boots, Slippers, Loafers, Running Shoes"),
    ("Jewelry", 35, "Necklace, Bracelet, Ring, Earrings, Brooch, Anklet"),
    ("Music", 20, "Harmonica, Guitar Picks, Vinyl Record, Tambourine, Metronome, Songbook"),
    ("Outdoor", 40, "Tent, Sleeping Bag, Camping Stove, Compass, Backpack, Hammock"),
    ("Baby", 20, "Bib, Rattle, Baby Blanket, Teether, Sippy Cup, Onesie"),
    ("Grocery", 5, "Coffee Beans, Green Tea, Olive Oil, Honey, Dark Chocolate, Granola"),
    ("Tools", 24, "Hammer, Screwdriver Set, Tape Measure, Wrench, Drill Bits, Spirit Level"),
    ("Automotive", 18, "Seat Cover, Ice Scraper, Air Freshener, Phone Mount, Floor Mat, Car Charger"),
    ("Health", 12, "Vitamins, First Aid Kit, Thermometer, Hand Gel, Heat Pack, Pill Box"),
    ("Games", 25, "Board Game, Card Game, Chess Set, Dice Set, Jigsaw, Dominoes"),
    ("Crafts", 10, "Yarn, Paint Set, Sketchbook, Glue Gun, Bead Kit, Brush Set"),
    ("Lighting", 30, "Desk Lamp, Fairy Lights, Floor Lamp, Night Light, Bulb Pack, Wall Light"),
    ("Travel", 35, "Suitcase, Travel Pillow, Passport Holder, Toiletry Bag, Luggage Tag, Packing Cubes"),
)
ADJECTIVES = ("Classic Vintage Compact Deluxe Eco Mini Premium Rustic Modern Handmade Everyday Soft "
              "Bold Nordic Retro Cosy").split()
MATERIALS = "Red Blue White Black Green Grey Pink Yellow Oak Steel Linen Ceramic Bamboo Cotton Copper Glass".split()
BRANDS = ("Acme Northwind Lumen Brightside Oakridge Bluebird Everly Summit Harbor Kestrel Nova Pinecrest "
          "Willow Fairfax Halcyon Marlow Juniper Corvid Tidewell Ember Quill Sable Aster Bramble").split()
BRANDS_PER_CATEGORY = 4
PRICE_SIGMA = 0.5  # log-price spread within a category
POPULARITY_EXPONENT = 0.9  # item weight within its category ~ 1 / rank**0.9 (a long tail)
FIRST_ITEM_ID = 1000  # item ids are "1000", "1001", … (they read like shop SKUs)


@dataclass
class Catalog:
    """The catalog table plus the arrays the journey simulator samples from (item index order)."""

    table: pd.DataFrame  # item_id, title, category, brand, price
    category_names: list[str]
    item_category: np.ndarray  # [M] int, category of each item
    rel_log_price: np.ndarray  # [M] log(price) - log(category median): >0 is pricey for its kind
    by_category: np.ndarray  # [M] item indices grouped by category
    category_start: np.ndarray  # [C + 1] offsets of each category's block in `by_category`
    popularity_cdf: np.ndarray  # [M] category index + within-category popularity CDF, see draw_items

    def draw_items(self, rng: np.random.Generator, categories: np.ndarray) -> np.ndarray:
        """One item per entry of ``categories``, popular items more often (inverse-CDF sampling).

        ``popularity_cdf`` holds ``c + F_c(k)`` for the k-th item of category c, so one sorted
        search over all categories at once finds the item whose CDF step covers ``c + u``.
        """
        u = rng.random(categories.size)
        pos = np.searchsorted(self.popularity_cdf, categories + u, side="right")
        # float rounding can put c + u just past the block's last step: clamp into the block
        pos = np.clip(pos, self.category_start[categories], self.category_start[categories + 1] - 1)
        return self.by_category[pos]


def category_names(n: int) -> list[str]:
    """The first ``n`` category names; past the word list, numbered variants ("Kitchen 2")."""
    base = [c[0] for c in CATEGORIES]
    return [base[i % len(base)] + ("" if i < len(base) else f" {i // len(base) + 1}") for i in range(n)]


def build_catalog(rng: np.random.Generator, n_items: int, n_categories: int) -> Catalog:
    """Items spread over categories (every category gets at least one), with unique titles."""
    C, M = n_categories, n_items
    names = category_names(C)
    # category sizes: multinomial around equal shares, at least one item each
    sizes = 1 + rng.multinomial(M - C, rng.dirichlet(np.full(C, 8.0)))
    item_cat = rng.permutation(np.repeat(np.arange(C), sizes))  # [M], shuffled so ids do not leak categories
    titles = np.empty(M, dtype=object)
    brands = np.empty(M, dtype=object)
    log_median = np.log([CATEGORIES[c % len(CATEGORIES)][1] for c in range(C)])  # [C]
    brand_effect = rng.normal(0.0, 0.25, len(BRANDS))  # premium and budget brands
    brand_idx = np.empty(M, dtype=np.int64)
    n_combos = len(ADJECTIVES) * len(MATERIALS)
    for c in range(C):  # a loop over categories (a few dozen), never over events
        members = np.flatnonzero(item_cat == c)
        nouns = [n.strip() for n in CATEGORIES[c % len(CATEGORIES)][2].split(",")]
        # more items than word combinations: cycle them with a number ("Red Mug 2")
        repeat = np.arange(members.size) // (n_combos * len(nouns))
        combos = rng.permutation(n_combos * len(nouns))[np.arange(members.size) % (n_combos * len(nouns))]
        adj, rest = np.divmod(combos, len(MATERIALS) * len(nouns))
        mat, noun = np.divmod(rest, len(nouns))
        titles[members] = [
            f"{ADJECTIVES[a]} {MATERIALS[m]} {nouns[n]}" + (f" {r + 1}" if r else "")
            for a, m, n, r in zip(adj, mat, noun, repeat)
        ]
        cat_brands = rng.choice(len(BRANDS), size=min(BRANDS_PER_CATEGORY, len(BRANDS)), replace=False)
        brand_idx[members] = rng.choice(cat_brands, size=members.size)
    brands[:] = [BRANDS[b] for b in brand_idx]
    log_price = log_median[item_cat] + brand_effect[brand_idx] + rng.normal(0.0, PRICE_SIGMA, M)
    price = np.maximum(1.0, np.round(np.exp(log_price))) - 0.01  # shop prices: 12.99
    # popularity: a random rank inside the category, weight 1/rank**a, CDF per category block
    by_cat = np.argsort(item_cat, kind="stable")
    start = np.concatenate([[0], np.cumsum(np.bincount(item_cat, minlength=C))])
    rank = np.empty(M)
    for c in range(C):
        rank[start[c]:start[c + 1]] = rng.permutation(start[c + 1] - start[c]) + 1.0
    weight = rank ** -POPULARITY_EXPONENT  # [M] in by_cat order
    cum = np.cumsum(weight)
    block_start = np.repeat(cum[start[:-1]] - weight[start[:-1]], np.diff(start))
    block_total = np.repeat(cum[start[1:] - 1] - cum[start[:-1]] + weight[start[:-1]], np.diff(start))
    cdf = item_cat[by_cat] + (cum - block_start) / block_total
    table = pd.DataFrame({
        "item_id": pd.Series((FIRST_ITEM_ID + np.arange(M)).astype(str), dtype="string"),
        "title": pd.Series(titles, dtype="string"),
        "category": pd.Series(np.asarray(names, dtype=object)[item_cat], dtype="string"),
        "brand": pd.Series(brands, dtype="string"),
        "price": price,
    })
    return Catalog(table, names, item_cat, log_price - log_median[item_cat], by_cat, start, cdf)
