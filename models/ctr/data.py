"""Synthetic click logs with a known click probability, for the Deep Interest Network family.

The world follows the story of Zhou et al., "Deep Interest Network for Click-Through Rate
Prediction" (KDD 2018), section 3: a user has *several* interests, the behaviour history mixes
them, and whether a user clicks a candidate ad depends on the few past behaviours that are
relevant to *that* ad. Concretely, with latent item vectors v (category centre + within-category
spread) and a user's behaviours h_1..h_T:

    R(u, c)   = sum_j s_{u, k(h_j)} * exp(-||v_c - v_{h_j}||^2 / (2 * kernel_width^2))
    logit     = click_bias + click_scale * log(1 + R(u, c)) + popularity_c
    P(click)  = sigmoid(logit)

R is an *unnormalised* sum over the specific behaviours (a user with many close behaviours is
more interested, cf. the paper's argument against softmax in section 4.3), s is a hidden
intensity per interest, and the log link saturates. A sum-pooled history vector (the paper's
BaseModel) has to squeeze every interest into one fixed-width vector before it sees the ad;
a local activation unit can weigh each behaviour against the ad. Everything the click depends on
except the intensity s and the coin flip is visible to every model: behaviour ids and the
candidate id. The true probability is kept so the oracle AUC/GAUC bounds what any model can reach.

Ids: items are 1..n_items, categories 1..n_categories; 0 is reserved for padding everywhere.
The split into train/validation/test is by user, so test users were never seen in training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class ClickDataConfig:
    n_users: int = 10_000  # users in the whole log (split by user below)
    n_items: int = 600  # item ids 1..n_items
    n_categories: int = 30  # category ids 1..n_categories; items spread evenly over them
    latent_dim: int = 4  # width of the hidden item vectors
    category_spread: float = 2.0  # std of category centres (categories are far apart)
    item_spread: float = 1.0  # std of items around their category centre (items differ)
    min_interests: int = 2  # fewest interests (categories) a user has
    max_interests: int = 4  # most interests a user has
    interest_concentration: float = 1.0  # Dirichlet alpha of the mix over a user's interests
    taste_width: float = 1.5  # how tightly a user's behaviours cluster around their taste point
    intensity_sigma: float = 0.5  # log-normal std of the hidden per-interest intensity
    max_history: int = 50  # longest behaviour history; lengths are uniform in 1..max_history
    min_candidates: int = 10  # fewest candidate ads shown to a user
    max_candidates: int = 20  # most candidate ads shown to a user
    near_fraction: float = 0.5  # share of candidates drawn from the user's interest categories
    kernel_width: float = 1.5  # bandwidth of the behaviour-candidate similarity kernel
    click_bias: float = -2.0  # logit offset: sets the overall click rate
    click_scale: float = 1.5  # logit slope on log(1 + relevance)
    popularity_std: float = 0.3  # std of the per-item popularity logit bias
    item_zipf: float = 0.0  # > 0: long tail, item i is drawn with weight rank_i^-item_zipf (0 = no tail)
    valid_fraction: float = 0.1  # share of users held out for validation
    test_fraction: float = 0.1  # share of users held out for test
    seed: int = 0  # one seed determines the whole world and log


@dataclass
class ClickData:
    """A click log: one behaviour history per user, impressions sorted by user."""

    config: ClickDataConfig
    item_category: np.ndarray  # (n_items + 1,) int64 category of each item, [0] = 0 (padding)
    item_latent: np.ndarray  # (n_items + 1, latent_dim) hidden item vectors, [0] unused
    history_items: np.ndarray  # (U, max_history) int64 behaviour item ids, 0-padded at the end
    history_categories: np.ndarray  # (U, max_history) int64 category of each behaviour
    history_lengths: np.ndarray  # (U,) int64 valid behaviours per user, >= 1
    candidate_items: np.ndarray  # (M,) int64 candidate ad of each impression
    candidate_categories: np.ndarray  # (M,) int64 its category
    labels: np.ndarray  # (M,) float32 1.0 = clicked
    click_probability: np.ndarray  # (M,) float64 the true P(click) the label was drawn from
    user_index: np.ndarray  # (M,) int64 user of each impression, non-decreasing
    impression_offsets: np.ndarray  # (U + 1,) impressions of user u are [off[u], off[u+1])
    train_users: np.ndarray  # user ids for training
    valid_users: np.ndarray  # user ids for validation (model selection)
    test_users: np.ndarray  # user ids for the reported figures

    @property
    def n_users(self) -> int:
        return len(self.history_lengths)

    def impressions_of(self, users: np.ndarray) -> np.ndarray:
        """Indices of all impressions belonging to `users`, in the order given."""
        starts, ends = self.impression_offsets[users], self.impression_offsets[users + 1]
        return np.concatenate([np.arange(s, e) for s, e in zip(starts, ends, strict=True)])

    def id_frequencies(self, users: np.ndarray) -> dict[str, np.ndarray]:
        """How often each item / category id occurs in the histories and candidates of `users`."""
        rows = self.impressions_of(users)
        valid = self.history_items[users] > 0
        items = np.concatenate([self.history_items[users][valid], self.candidate_items[rows]])
        cats = np.concatenate([self.history_categories[users][valid], self.candidate_categories[rows]])
        return {
            "item": np.bincount(items, minlength=self.config.n_items + 1),
            "category": np.bincount(cats, minlength=self.config.n_categories + 1),
        }


def _make_items(cfg: ClickDataConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Item -> category (even round-robin) and latent vectors around category centres."""
    centres = rng.normal(0.0, cfg.category_spread, (cfg.n_categories + 1, cfg.latent_dim))
    item_category = np.zeros(cfg.n_items + 1, dtype=np.int64)
    item_category[1:] = rng.permutation(np.arange(cfg.n_items) % cfg.n_categories + 1)
    noise = rng.normal(0.0, cfg.item_spread, (cfg.n_items + 1, cfg.latent_dim))
    latent = centres[item_category] + noise
    latent[0] = 0.0
    return item_category, latent


def _kernel(a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    """RBF similarity between rows of a (N, d) and b (T, d) -> (N, T)."""
    sq = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-sq / (2.0 * width**2))


class _World:
    """Fixed items, their categories and popularity; samples one user at a time."""

    def __init__(self, cfg: ClickDataConfig, rng: np.random.Generator) -> None:
        self.cfg, self.rng = cfg, rng
        self.item_category, self.latent = _make_items(cfg, rng)
        self.popularity = rng.normal(0.0, cfg.popularity_std, cfg.n_items + 1)
        self.items_by_category = [np.flatnonzero(self.item_category == k) for k in range(cfg.n_categories + 1)]
        self.exposure = np.ones(cfg.n_items + 1)  # how often an item is drawn, before taste
        if cfg.item_zipf > 0:  # a random popularity rank per item, Zipf weights
            self.exposure[1:] = (1.0 + rng.permutation(cfg.n_items)) ** -cfg.item_zipf

    def _draw(self, items: np.ndarray, count: Any = None) -> np.ndarray:
        """Items drawn (with replacement) in proportion to their exposure."""
        if self.cfg.item_zipf <= 0:
            return self.rng.choice(items, count)
        weights = self.exposure[items]
        return self.rng.choice(items, count, p=weights / weights.sum())

    def _behaviour_pool(self, category: int) -> tuple[np.ndarray, np.ndarray]:
        """A user's taste inside one category: items near a personal point are favoured."""
        items = self.items_by_category[category]
        taste = self.latent[self.rng.choice(items)]  # personal point: one liked item
        sq = ((self.latent[items] - taste) ** 2).sum(-1)
        weights = np.exp(-sq / (2.0 * self.cfg.taste_width**2)) * self.exposure[items]
        return items, weights / weights.sum()

    def sample_user(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """-> (history items, candidate items, labels, true click probabilities)."""
        cfg, rng = self.cfg, self.rng
        n_interests = rng.integers(cfg.min_interests, cfg.max_interests + 1)
        interests = rng.choice(np.arange(1, cfg.n_categories + 1), n_interests, replace=False)
        mix = rng.dirichlet(np.full(n_interests, cfg.interest_concentration))
        intensity = np.exp(rng.normal(0.0, cfg.intensity_sigma, n_interests))
        pools = [self._behaviour_pool(k) for k in interests]
        length = rng.integers(1, cfg.max_history + 1)
        which = np.sort(rng.choice(n_interests, length, p=mix))  # (T,) interest of each
        per_interest = np.bincount(which, minlength=n_interests)
        history = np.concatenate([rng.choice(pool, n, p=p) for (pool, p), n in zip(pools, per_interest, strict=True)])
        order = rng.permutation(length)  # interleave the interests in time
        history, which = history[order], which[order]
        candidates = self._sample_candidates(interests, mix)
        behaviour_weight = intensity[which]  # (T,) intensity of the interest behind each one
        kernel = _kernel(self.latent[candidates], self.latent[history], cfg.kernel_width)
        relevance = kernel @ behaviour_weight  # (N,)
        logit = cfg.click_bias + cfg.click_scale * np.log1p(relevance)
        probability = 1.0 / (1.0 + np.exp(-(logit + self.popularity[candidates])))
        labels = (rng.random(len(candidates)) < probability).astype(np.float32)
        return history, candidates, labels, probability

    def _sample_candidates(self, interests: np.ndarray, mix: np.ndarray) -> np.ndarray:
        """Half from the user's interest categories, half from all items; uniformly, or by
        exposure with a long tail."""
        cfg, rng = self.cfg, self.rng
        n = rng.integers(cfg.min_candidates, cfg.max_candidates + 1)
        n_near = rng.binomial(n, cfg.near_fraction)
        near_categories = rng.choice(interests, n_near, p=mix)
        near = [self._draw(self.items_by_category[k]) for k in near_categories]
        if cfg.item_zipf > 0:
            far = self._draw(np.arange(1, cfg.n_items + 1), n - n_near)
        else:
            far = rng.integers(1, cfg.n_items + 1, n - n_near)
        return rng.permutation(np.concatenate([np.array(near, dtype=np.int64), far]))


def _split_users(cfg: ClickDataConfig, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    order = rng.permutation(cfg.n_users)
    n_valid = round(cfg.n_users * cfg.valid_fraction)
    n_test = round(cfg.n_users * cfg.test_fraction)
    test, valid = order[:n_test], order[n_test : n_test + n_valid]
    return np.sort(order[n_test + n_valid :]), np.sort(valid), np.sort(test)


def make_click_data(cfg: ClickDataConfig | None = None) -> ClickData:
    """Build the whole synthetic log from `cfg.seed`; the same config gives the same arrays."""
    cfg = cfg or ClickDataConfig()
    rng = np.random.default_rng(cfg.seed)
    world = _World(cfg, rng)
    history = np.zeros((cfg.n_users, cfg.max_history), dtype=np.int64)
    lengths = np.zeros(cfg.n_users, dtype=np.int64)
    candidates, labels, probabilities, counts = [], [], [], []
    for user in range(cfg.n_users):
        items, cands, clicks, prob = world.sample_user()
        history[user, : len(items)] = items
        lengths[user] = len(items)
        candidates.append(cands)
        labels.append(clicks)
        probabilities.append(prob)
        counts.append(len(cands))
    candidate_items = np.concatenate(candidates)
    train, valid, test = _split_users(cfg, rng)
    return ClickData(
        config=cfg,
        item_category=world.item_category,
        item_latent=world.latent,
        history_items=history,
        history_categories=world.item_category[history],
        history_lengths=lengths,
        candidate_items=candidate_items,
        candidate_categories=world.item_category[candidate_items],
        labels=np.concatenate(labels),
        click_probability=np.concatenate(probabilities),
        user_index=np.repeat(np.arange(cfg.n_users), counts),
        impression_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        train_users=train,
        valid_users=valid,
        test_users=test,
    )


def data_config_dict(cfg: ClickDataConfig) -> dict:
    """Plain dict of the generator settings, stored in checkpoints and reports."""
    return asdict(cfg)


def user_batch(data: ClickData, users: np.ndarray) -> dict[str, torch.Tensor]:
    """Tensors for a batch of users: one row per user, N = most candidates in the batch.

    History is trimmed to the longest history in the batch (T is dynamic); candidate slots
    beyond a user's own candidates hold id 0 and `candidate_mask` 0.0.
    """
    t_max = int(data.history_lengths[users].max())
    counts = data.impression_offsets[users + 1] - data.impression_offsets[users]
    n_max = int(counts.max())
    slot = np.arange(n_max)[None, :]  # (1, N)
    valid = slot < counts[:, None]  # (B, N)
    rows = np.where(valid, data.impression_offsets[users][:, None] + slot, 0)  # (B, N)
    history_items = data.history_items[users, :t_max]  # (B, T)
    return {
        "history_items": torch.from_numpy(history_items),
        "history_categories": torch.from_numpy(data.history_categories[users, :t_max]),
        "history_mask": torch.from_numpy((history_items > 0).astype(np.float32)),
        "candidate_items": torch.from_numpy(np.where(valid, data.candidate_items[rows], 0)),
        "candidate_categories": torch.from_numpy(np.where(valid, data.candidate_categories[rows], 0)),
        "candidate_mask": torch.from_numpy(valid.astype(np.float32)),
        "labels": torch.from_numpy(np.where(valid, data.labels[rows], 0.0).astype(np.float32)),
        "impression_rows": torch.from_numpy(rows),
    }


def iterate_batches(
    data: ClickData,
    users: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None = None,
    bucket_by_length: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield `user_batch`es over `users`; shuffled when an `rng` is given.

    With `bucket_by_length`, users of similar history length share a batch (random order of
    batches and of ties), so less of each batch is padding: the attention cost scales with T.
    """
    if bucket_by_length:
        jitter = rng.random(len(users)) if rng is not None else np.zeros(len(users))
        order = users[np.argsort(data.history_lengths[users] + jitter, kind="stable")]
    else:
        order = rng.permutation(users) if rng is not None else users
    starts = np.arange(0, len(order), batch_size)
    if bucket_by_length and rng is not None:
        starts = rng.permutation(starts)
    for start in starts:
        yield user_batch(data, order[start : start + batch_size])
