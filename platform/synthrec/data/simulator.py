"""A built-in, seeded simulator of an e-commerce search log. THE DATA IS SIMULATED.

Nothing here comes from real people or shops. It exists so the pipeline has demo data of any
size (10 thousand to 10 million rows) with the structure of a real search log:

- users: a segment (new / casual / power: how often they visit, how far they scroll, how
  readily they buy), age, gender, region, a primary device, a favourite category that depends
  on age and gender, and a price sensitivity;
- a catalog: Zipf-imbalanced categories (the last ones are rare), brands that belong to
  categories, lognormal prices per category (with a brand premium), a latent quality and a
  long-tail popularity;
- sessions: a user searches a query tied to a category (often their favourite); the engine
  shows a ranked page of distinct items (mostly from the query's category, ranked by
  popularity, quality and noise); the user examines position p with probability p^-0.9
  (position bias), clicks what attracts them, adds some clicks to the cart and buys some
  carted items (cart only after click, purchase only after cart);
- timestamps over four weeks with a daily and weekly rhythm.

One row per impression. Generation is vectorized in blocks of `BLOCK_ROWS` rows; block `b`
draws from its own stream `(seed, b)` and covers its share of the time range, so the output
depends only on (config, rows), never on how it is batched or on how many workers made it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthrec import storage as st
from synthrec.config import SimulateConfig, StorageConfig
from synthrec.errors import ConfigError
from synthrec.schema import ColumnSpec, Kind, Role, Schema

BLOCK_ROWS = 100_000  # the unit of generation; fixed so output does not depend on batching
START_S = 1_709_510_400  # 2024-03-04 00:00 UTC, a Monday
NUM_DAYS = 28
WORLD_STREAM, BLOCK_STREAM = 0, 1

SEGMENTS = ("new", "casual", "power")
SEGMENT_SHARE = (0.3, 0.5, 0.2)  # of users
SEGMENT_ACTIVITY = (1.0, 3.0, 10.0)  # relative sessions per user
SEGMENT_PAGE = (8.0, 10.0, 14.0)  # mean impressions per session
SEGMENT_FAVOURITE = (0.3, 0.5, 0.65)  # P(search in the favourite category)
SEGMENT_PRICE_SENS = (1.4, 1.0, 0.7)
SEGMENT_CLICK, SEGMENT_CART, SEGMENT_BUY = (0.1, 0.0, 0.2), (-0.4, 0.0, 0.4), (-0.6, 0.0, 0.6)
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_SHARE = (0.6, 0.32, 0.08)
DEVICE_CLICK, DEVICE_BUY = (0.1, 0.0, 0.05), (-0.3, 0.2, 0.0)
GENDERS = ("F", "M", "U")
GENDER_SHARE = (0.49, 0.47, 0.04)
REGIONS = ("northeast", "southeast", "midwest", "southwest", "west")
REGION_SHARE = (0.22, 0.24, 0.2, 0.12, 0.22)
AGE_EDGES = (25, 35, 50)  # age groups for category taste
CATEGORY_NAMES = (
    "phones",
    "laptops",
    "shoes",
    "t-shirts",
    "books",
    "headphones",
    "kitchen",
    "toys",
    "jeans",
    "beauty",
    "furniture",
    "watches",
    "sports",
    "garden",
    "bags",
    "cameras",
    "jackets",
    "grocery",
    "tv",
    "pet supplies",
    "tools",
    "jewelry",
    "office",
    "gaming",
    "bedding",
    "lighting",
    "baby",
    "car parts",
    "music",
    "software",
    "tablets",
    "printers",
    "luggage",
    "sunglasses",
    "bikes",
    "fitness",
    "crafts",
    "party",
    "outdoor",
    "health",
)
QUERY_WORDS = (
    "cheap",
    "best",
    "sale",
    "new",
    "premium",
    "for kids",
    "for men",
    "for women",
    "black",
    "white",
    "small",
    "large",
    "wireless",
    "gift",
    "set",
    "pro",
    "mini",
    "deal",
    "2024",
    "brand",
    "original",
    "lightweight",
    "waterproof",
    "organic",
    "classic",
    "vintage",
)
CLICK_BIAS, CART_BIAS, BUY_BIAS = (
    -2.4,
    -2.1,
    -0.9,
)  # calibrated: CTR ~10%, cart|click ~20%, buy|cart ~40%
POSITION_DECAY = 0.9


@dataclass(frozen=True)
class Sampler:
    """Draws members of a group with given weights: `cdf` = group + cumulative share within it."""

    order: np.ndarray  # (M,) member ids sorted by group
    cdf: np.ndarray  # (M,) float, increasing; group g's members span (g, g + 1]

    @classmethod
    def build(cls, group: np.ndarray, weight: np.ndarray) -> Sampler:
        order = np.argsort(group, kind="stable")
        g, w = group[order], weight[order].astype(np.float64)
        cum = np.cumsum(w)
        first = np.r_[True, g[1:] != g[:-1]]
        before = np.maximum.accumulate(np.where(first, cum - w, 0.0))  # total before each group
        last = np.r_[g[1:] != g[:-1], True]
        total = (cum[last] - before[last])[np.cumsum(first) - 1]
        within = (cum - before) / total
        within[last] = 1.0  # exact, so group g ends at g + 1
        return cls(order, g + within)

    def draw(self, group: np.ndarray | int, rng: np.random.Generator, size: int) -> np.ndarray:
        u = rng.random(size) * (1.0 - 1e-9)  # stay below g + 1 despite rounding
        idx = np.searchsorted(self.cdf, group + u, side="right")
        return self.order[np.minimum(idx, len(self.order) - 1)]


@dataclass(frozen=True)
class World:
    """Users, catalog and queries: drawn once per seed, shared by every block."""

    user_segment: np.ndarray  # (U,) int codes into SEGMENTS
    user_age: np.ndarray  # (U,) int64
    user_gender: np.ndarray  # (U,) codes into GENDERS
    user_region: np.ndarray  # (U,) codes into REGIONS
    user_device: np.ndarray  # (U,) primary device, codes into DEVICES
    user_favourite: np.ndarray  # (U,) category
    user_price_sens: np.ndarray  # (U,) float
    users: Sampler  # by activity
    item_category: np.ndarray  # (N,)
    item_brand: np.ndarray  # (N,)
    item_price: np.ndarray  # (N,) float64, 2 decimals
    item_price_z: np.ndarray  # (N,) log price relative to the category, in category sigmas
    item_quality: np.ndarray  # (N,)
    item_log_pop: np.ndarray  # (N,)
    items_in_category: Sampler
    items_overall: Sampler
    categories: Sampler  # overall search share of each category
    query_category: np.ndarray  # (Q,)
    queries_in_category: Sampler
    user_ids: pa.Array
    item_ids: pa.Array
    brand_names: pa.Array
    category_names: pa.Array
    query_texts: pa.Array


def check_config(cfg: SimulateConfig) -> None:
    """Cross-field rules: every category needs at least one item and one query."""
    for key in ("num_items", "num_queries"):
        if getattr(cfg, key) < cfg.num_categories:
            raise ConfigError(
                f"key '{key}': {getattr(cfg, key)} is fewer than "
                f"num_categories={cfg.num_categories}; "
                f"every category needs one; raise {key} or lower num_categories"
            )


def build_world(cfg: SimulateConfig) -> World:
    """Draw users, catalog and queries from `cfg.seed` (the same on every worker)."""
    check_config(cfg)
    rng = np.random.default_rng([cfg.seed, WORLD_STREAM])
    cat_weight = 1.0 / np.arange(1, cfg.num_categories + 1) ** 1.1  # Zipf: category 0 most common
    cat_weight /= cat_weight.sum()
    users = _draw_users(cfg, rng, cat_weight)
    items = _draw_catalog(cfg, rng, cat_weight)
    queries = _draw_queries(cfg, rng, cat_weight)
    names = [
        CATEGORY_NAMES[c] if c < len(CATEGORY_NAMES) else f"category {c:04d}"
        for c in range(cfg.num_categories)
    ]
    return World(
        **users,
        **items,
        **queries,
        categories=Sampler.build(np.zeros(cfg.num_categories, np.int64), cat_weight),
        user_ids=_ids("u", cfg.num_users),
        item_ids=_ids("i", cfg.num_items),
        brand_names=_ids("brand ", cfg.num_brands),
        category_names=pa.array(names),
        query_texts=_query_texts(names, queries["query_category"]),
    )


def _draw_users(cfg: SimulateConfig, rng: np.random.Generator, cat_weight: np.ndarray) -> dict:
    n = cfg.num_users
    segment = rng.choice(len(SEGMENTS), n, p=SEGMENT_SHARE)
    age = np.clip(np.rint(rng.normal(np.array([31.0, 37.0, 40.0])[segment], 12.0)), 18, 80).astype(
        np.int64
    )
    gender = rng.choice(len(GENDERS), n, p=GENDER_SHARE)
    # Taste: each (age group, gender) has its own tilt of the overall category shares.
    num_groups = (len(AGE_EDGES) + 1) * len(GENDERS)
    taste = cat_weight[None, :] * rng.lognormal(0.0, 0.8, (num_groups, cfg.num_categories))
    group = np.digitize(age, AGE_EDGES) * len(GENDERS) + gender
    taste_sampler = Sampler.build(
        np.repeat(np.arange(num_groups), cfg.num_categories), taste.ravel()
    )
    favourite = taste_sampler.draw(group, rng, n) % cfg.num_categories
    activity = np.array(SEGMENT_ACTIVITY)[segment] * rng.lognormal(0.0, 0.5, n)
    return dict(
        user_segment=segment,
        user_age=age,
        user_gender=gender,
        user_region=rng.choice(len(REGIONS), n, p=REGION_SHARE),
        user_device=rng.choice(len(DEVICES), n, p=DEVICE_SHARE),
        user_favourite=favourite,
        user_price_sens=np.array(SEGMENT_PRICE_SENS)[segment] * rng.lognormal(0.0, 0.3, n),
        users=Sampler.build(np.zeros(n, np.int64), activity),
    )


def _draw_catalog(cfg: SimulateConfig, rng: np.random.Generator, cat_weight: np.ndarray) -> dict:
    n, c, b = cfg.num_items, cfg.num_categories, cfg.num_brands
    category = np.r_[np.arange(c), rng.choice(c, n - c, p=cat_weight)]  # every category has an item
    # Brand j of category k is k + c*j; a category's first brands are the big ones.
    brands_in = np.maximum((b - np.arange(c) + c - 1) // c, 0)
    slot = np.floor(rng.random(n) ** 2 * np.maximum(brands_in[category], 1)).astype(np.int64)
    brand = np.where(brands_in[category] > 0, category + c * slot, category % b)
    log_median = rng.uniform(np.log(8.0), np.log(400.0), c)
    sigma = rng.uniform(0.3, 0.9, c)
    premium = rng.lognormal(0.0, 0.25, b)
    log_price = log_median[category] + np.log(premium[brand]) + rng.normal(0.0, sigma[category])
    price = np.maximum(np.round(np.exp(log_price), 2), 0.99)
    quality = rng.normal(0.0, 1.0, n)
    rank = rng.permutation(n) + 1
    log_pop = -0.9 * np.log(rank) + 0.5 * quality  # long tail, better items a bit more popular
    pop = np.exp(log_pop - log_pop.max())
    return dict(
        item_category=category,
        item_brand=brand,
        item_price=price,
        item_price_z=(np.log(price) - log_median[category]) / sigma[category],
        item_quality=quality,
        item_log_pop=log_pop,
        items_in_category=Sampler.build(category, pop),
        items_overall=Sampler.build(np.zeros(n, np.int64), pop),
    )


def _draw_queries(cfg: SimulateConfig, rng: np.random.Generator, cat_weight: np.ndarray) -> dict:
    q, c = cfg.num_queries, cfg.num_categories
    category = np.r_[np.arange(c), rng.choice(c, q - c, p=cat_weight)]
    weight = 1.0 / (rng.permutation(q) + 1.0)  # a few head queries per category, many rare ones
    return dict(query_category=category, queries_in_category=Sampler.build(category, weight))


def _ids(prefix: str, n: int) -> pa.Array:
    digits = pc.utf8_lpad(pa.array(np.arange(n)).cast(pa.string()), max(len(str(n - 1)), 4), "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _query_texts(names: list[str], query_category: np.ndarray) -> pa.Array:
    """Query k of a category is its name, then the name plus a word (a number past the words)."""
    order = np.argsort(query_category, kind="stable")
    first = np.searchsorted(query_category[order], query_category[order])
    k = np.empty_like(order)
    k[order] = np.arange(len(order)) - first
    w = len(QUERY_WORDS)
    texts = [  # world-sized (num_queries), not per row
        names[c]
        if j == 0
        else f"{names[c]} {QUERY_WORDS[(j - 1) % w]}" + (f" {(j - 1) // w}" if j > w else "")
        for c, j in zip(query_category.tolist(), k.tolist())
    ]
    return pa.array(texts)


# ---------------------------------------------------------------------------- sessions


def num_blocks(rows: int) -> int:
    return -(-rows // BLOCK_ROWS)


def simulate_block(
    cfg: SimulateConfig, block_index: int, world: World | None = None
) -> pa.RecordBatch:
    """Rows [block_index * BLOCK_ROWS, ...) of the log for `cfg`: the same wherever it runs."""
    world = world or build_world(cfg)
    first = block_index * BLOCK_ROWS
    n = min(BLOCK_ROWS, cfg.rows - first)
    assert n > 0, f"block {block_index} is past rows={cfg.rows}"
    rng = np.random.default_rng([cfg.seed, BLOCK_STREAM, block_index])
    rows = _impressions(world, rng, n)
    session_start = _session_starts(
        rng, rows["num_sessions"], first / cfg.rows, (first + n) / cfg.rows
    )
    rows["timestamp"] = session_start[rows["session"]] + 2 * (rows["position"] - 1)
    rows["session_id"] = first + rows["session"]  # unique: a block has at most n sessions
    _outcomes(world, rng, rows)
    return _to_batch(world, rows)


def _impressions(world: World, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Exactly n impression rows, whole sessions in order (the last one may be cut short)."""
    rounds, have = [], 0
    while have < n:
        part = _sessions(world, rng, (n - have) // 9 + 8)
        rounds.append(part)
        have += len(part["item"])
    offsets = np.cumsum([0] + [r["num_sessions"] for r in rounds[:-1]])
    rows = {
        k: np.concatenate([r[k] + (o if k == "session" else 0) for r, o in zip(rounds, offsets)])[
            :n
        ]
        for k in rounds[0]
        if k != "num_sessions"
    }
    rows["num_sessions"] = int(rows["session"][-1]) + 1
    return rows


def _sessions(world: World, rng: np.random.Generator, num: int) -> dict[str, np.ndarray]:
    """`num` sessions: who, on what device, which query; then their ranked pages."""
    user = world.users.draw(0, rng, num)
    seg = world.user_segment[user]
    device = np.where(
        rng.random(num) < 0.85,
        world.user_device[user],
        rng.choice(len(DEVICES), num, p=DEVICE_SHARE),
    )
    favourite = rng.random(num) < np.array(SEGMENT_FAVOURITE)[seg]
    query_cat = np.where(favourite, world.user_favourite[user], world.categories.draw(0, rng, num))
    query = world.queries_in_category.draw(query_cat, rng, num)
    page = np.minimum(
        3 + rng.poisson(np.array(SEGMENT_PAGE)[seg] - 3), 50
    )  # (S,) impressions asked
    session = np.repeat(np.arange(num), page)  # (R,)
    item = world.items_in_category.draw(query_cat[session], rng, len(session))
    elsewhere = np.flatnonzero(
        rng.random(len(session)) >= 0.9
    )  # search also shows some other items
    item[elsewhere] = world.items_overall.draw(0, rng, len(elsewhere))
    # A page shows distinct items, ranked by popularity, quality, match and noise.
    _, keep = np.unique(session * len(world.item_category) + item, return_index=True)
    session, item = session[keep], item[keep]
    score = (
        world.item_log_pop[item]
        + 0.8 * world.item_quality[item]
        + rng.gumbel(0.0, 1.0, len(item))
        + 2.5 * (world.item_category[item] == query_cat[session])
    )
    rank = np.lexsort((-score, session))
    session, item = session[rank], item[rank]
    start = np.searchsorted(session, session)
    return dict(
        session=session,
        item=item,
        position=np.arange(len(session)) - start + 1,
        user=user[session],
        device=device[session],
        query=query[session],
        query_category=query_cat[session],
        num_sessions=num,
    )


def _session_starts(rng: np.random.Generator, num: int, lo: float, hi: float) -> np.ndarray:
    """Sorted start times (s) of `num` sessions filling quantiles [lo, hi) of the traffic curve."""
    hours = np.arange(NUM_DAYS * 24)
    hour_of_day, weekday = hours % 24, (hours // 24) % 7
    evening, lunch = (
        np.exp(-0.5 * ((hour_of_day - 20.0) / 3.5) ** 2),
        np.exp(-0.5 * ((hour_of_day - 12.5) / 2.0) ** 2),
    )
    diurnal = 0.25 + evening + 0.5 * lunch
    rate = diurnal * np.where(weekday >= 5, 1.15, 1.0)
    cum = np.r_[0.0, np.cumsum(rate)] / rate.sum()
    u = lo + (hi - lo) * np.sort(rng.random(num))
    return START_S + np.floor(np.interp(u, cum, np.arange(len(cum)) * 3600.0)).astype(np.int64)


def _outcomes(world: World, rng: np.random.Generator, rows: dict[str, np.ndarray]) -> None:
    """Click (examined and attracted), then cart given click, then purchase given cart."""
    item, user, device = rows["item"], rows["user"], rows["device"]
    seg = world.user_segment[user]
    quality, price_z = world.item_quality[item], world.item_price_z[item]
    sens = world.user_price_sens[user]
    examined = rng.random(len(item)) < rows["position"] ** -POSITION_DECAY
    attract = _attraction(world, rows)
    click = examined & (rng.random(len(item)) < _sigmoid(attract))
    cart_logit = CART_BIAS + 0.4 * quality + np.take(SEGMENT_CART, seg) - 0.5 * sens * price_z
    cart = click & (rng.random(len(item)) < _sigmoid(cart_logit))
    buy_logit = (
        BUY_BIAS
        + np.take(SEGMENT_BUY, seg)
        + np.take(DEVICE_BUY, device)
        + 0.015 * (world.user_age[user] - 36)
        - 0.3 * sens * price_z
    )
    purchase = cart & (rng.random(len(item)) < _sigmoid(buy_logit))
    rows.update(
        click=click.astype(np.int64), cart=cart.astype(np.int64), purchase=purchase.astype(np.int64)
    )


def click_propensity(cfg: SimulateConfig, table: pa.Table) -> np.ndarray:
    """(N,) the simulator's own position-free P(click | examined) of each row of a log it made:
    the oracle a debiased ranker can at best reach (it knows every user's taste and every
    item's quality)."""
    world = build_world(cfg)

    def index(column: str, values: pa.Array) -> np.ndarray:
        found = pc.index_in(table.column(column), value_set=values)
        if found.null_count:
            raise ConfigError(
                f"column '{column}' has values the simulator (seed {cfg.seed}) did not make; "
                "pass the SimulateConfig that generated this log"
            )
        return found.to_numpy().astype(np.int64)

    query = index("query", world.query_texts)
    rows = {
        "item": index("item_id", world.item_ids),
        "user": index("user_id", world.user_ids),
        "device": index("device", pa.array(DEVICES)),
        "query_category": world.query_category[query],
    }
    return _sigmoid(_attraction(world, rows))


def _attraction(world: World, rows: dict[str, np.ndarray]) -> np.ndarray:
    """Click logit of an examined impression (no position in it)."""
    item, user, device = rows["item"], rows["user"], rows["device"]
    seg = world.user_segment[user]
    quality, price_z = world.item_quality[item], world.item_price_z[item]
    sens = world.user_price_sens[user]
    return (
        CLICK_BIAS
        + 0.6 * quality
        + 0.8 * (world.item_category[item] == world.user_favourite[user])
        + 0.6 * (world.item_category[item] == rows["query_category"])
        + np.take(SEGMENT_CLICK, seg)
        + np.take(DEVICE_CLICK, device)
        - 0.3 * sens * price_z
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _to_batch(world: World, rows: dict[str, np.ndarray]) -> pa.RecordBatch:
    """Columns in log order: rows sorted by time (stable, so a session keeps its page order).

    Blocks follow each other in time; only a session that starts at a block's very end can
    overlap the next block's first seconds.
    """
    order = np.argsort(rows["timestamp"], kind="stable")
    user, item = rows["user"][order], rows["item"][order]

    def names(values: tuple[str, ...] | pa.Array, codes: np.ndarray) -> pa.Array:
        return (values if isinstance(values, pa.Array) else pa.array(values)).take(pa.array(codes))

    columns = {
        "timestamp": rows["timestamp"][order],
        "session_id": rows["session_id"][order],
        "user_id": names(world.user_ids, user),
        "user_segment": names(SEGMENTS, world.user_segment[user]),
        "age": world.user_age[user],
        "gender": names(GENDERS, world.user_gender[user]),
        "region": names(REGIONS, world.user_region[user]),
        "device": names(DEVICES, rows["device"][order]),
        "query": names(world.query_texts, rows["query"][order]),
        "category": names(world.category_names, world.item_category[item]),
        "item_id": names(world.item_ids, item),
        "brand": names(world.brand_names, world.item_brand[item]),
        "price": world.item_price[item],
        "position": rows["position"][order].astype(np.int64),
        "click": rows["click"][order],
        "cart": rows["cart"][order],
        "purchase": rows["purchase"][order],
    }
    return pa.RecordBatch.from_pydict(columns, schema=SCHEMA)


SCHEMA = pa.schema(
    [
        ("timestamp", pa.int64()),
        ("session_id", pa.int64()),
        ("user_id", pa.string()),
        ("user_segment", pa.string()),
        ("age", pa.int64()),
        ("gender", pa.string()),
        ("region", pa.string()),
        ("device", pa.string()),
        ("query", pa.string()),
        ("category", pa.string()),
        ("item_id", pa.string()),
        ("brand", pa.string()),
        ("price", pa.float64()),
        ("position", pa.int64()),
        ("click", pa.int64()),
        ("cart", pa.int64()),
        ("purchase", pa.int64()),
    ],
    metadata={"synthrec.source": "simulated e-commerce search log (not real data)"},
)

ROLES = {
    "timestamp": Role.DATETIME,
    "session_id": Role.CATEGORICAL,
    "user_id": Role.USER_ID,
    "user_segment": Role.CATEGORICAL,
    "age": Role.NUMERIC,
    "gender": Role.CATEGORICAL,
    "region": Role.CATEGORICAL,
    "device": Role.CATEGORICAL,
    "query": Role.CATEGORICAL,
    "category": Role.CATEGORICAL,
    "item_id": Role.ITEM_ID,
    "brand": Role.CATEGORICAL,
    "price": Role.NUMERIC,
    "position": Role.NUMERIC,
    "click": Role.LABEL,
    "cart": Role.LABEL,
    "purchase": Role.LABEL,
}


def simulated_schema() -> Schema:
    """Roles of the simulator's columns (query is categorical: a short phrase from a fixed set)."""
    kinds = {pa.int64(): Kind.INT, pa.string(): Kind.STRING, pa.float64(): Kind.FLOAT}
    return Schema([ColumnSpec(f.name, ROLES[f.name], kinds[f.type]) for f in SCHEMA])


# ---------------------------------------------------------------------------- public entry points


def simulate_batches(
    cfg: SimulateConfig, batch_rows: int | None = None, progress: Callable[..., None] | None = None
) -> Iterator[pa.RecordBatch]:
    """Stream the log as record batches (one per block, or of `batch_rows` rows each).

    Memory stays bounded by a block; the rows are the same for any `batch_rows`.
    """
    if batch_rows is not None and batch_rows < 1:
        raise ConfigError(f"batch_rows must be >= 1, got {batch_rows}")
    world = build_world(cfg)
    held: pa.Table | None = None  # rows generated but not yet yielded (< batch_rows)
    done = 0
    for b in range(num_blocks(cfg.rows)):
        batch = simulate_block(cfg, b, world)
        done += batch.num_rows
        if progress:
            progress(done)
        if batch_rows is None:
            yield batch
            continue
        table = pa.Table.from_batches([batch])
        held = table if held is None else pa.concat_tables([held, table])
        while held.num_rows >= batch_rows:
            yield held.slice(0, batch_rows).combine_chunks().to_batches()[0]
            held = held.slice(batch_rows)
    if held is not None and held.num_rows:
        yield held.combine_chunks().to_batches()[0]


def simulate(cfg: SimulateConfig) -> pa.Table:
    """The whole log as one table (for tests and small sizes; use simulate_batches for large)."""
    return pa.Table.from_batches(list(simulate_batches(cfg)), schema=SCHEMA)


def run_simulate(
    cfg: SimulateConfig,
    storage: StorageConfig | None = None,
    progress: Callable[..., None] | None = None,
) -> st.Manifest:
    """Simulate `cfg.rows` rows and publish them atomically at `cfg.out_uri` (local or s3://).

    Streams block by block (bounded memory); `progress(rows_done)` after each block. The
    manifest carries the exact row count, the config and the column roles.
    """
    check_config(cfg)
    st.check_writable(cfg.out_uri, storage)  # fail in seconds, before generating anything
    metadata = {
        "source": "simulator",
        "description": "SIMULATED e-commerce search log (synthrec.data.simulator); not real data",
        "config": cfg.model_dump(mode="json"),
        "schema": simulated_schema().to_dict(),
    }
    return st.write_dataset(
        simulate_batches(cfg, progress=progress),
        cfg.out_uri,
        storage,
        rows_per_file=cfg.rows_per_file,
        metadata=metadata,
    )
