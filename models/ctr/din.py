"""Deep Interest Network and its Embedding&MLP BaseModel.

Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018.

- Embedding: e = concat(item embedding, category embedding), id 0 is padding (section 4.1).
- BaseModel (section 4.2): the behaviour embeddings are SUM-pooled into one user vector.
- DIN (eq. 3): v_U(A) = sum_j a(e_j, v_A) * e_j, where the local activation unit a(.) is a small
  MLP on concat[e_j, v_A, e_j - v_A, e_j * v_A] (Fig. 2). Its outputs are NOT normalised by a
  softmax (section 4.3), so their sum keeps the intensity of the user's interest.
- Dice (eq. 5-6): p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps)), f(s) = p*s + (1-p)*alpha*s,
  with batch moments in training and moving averages at inference, like BatchNorm.
- Mini-batch aware regularisation (eq. 4): L2 on the embedding rows present in the batch, each
  scaled by 1 / n_j, the id's frequency in the training data.

Every matrix product reads its operands through a quantization slot (`nn.Identity` in a float
model, so nothing changes in its graph): models/ctr/qat.py swaps the slots for fake quantizers,
and the exported graph then carries the same Q/DQ pairs the fine-tune trained with.

The output head is an MLP 200 -> 80 -> 1 with a sigmoid on concat[user vector, ad embedding,
their product]. One row per user and N candidate ads per row, so the history is embedded once
per user and broadcast to its candidates.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as F


class Dice(nn.Module):
    """Data-adaptive activation (paper eq. 5-6), statistics over the last-dim features.

    In training the moments come from the valid positions of the batch (those with mask 1) and
    update `running_mean` / `running_var`; in eval the buffers are used, so the exported graph
    is plain elementwise tensor ops.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, num_features: int, eps: float = 1e-8, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.alpha = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.averaged_batches = 0  # > 0 while `reestimate_dice_statistics` averages batches

    def reset_statistics(self) -> None:
        """Start an equal-weight average of the batch moments (momentum 1/k for the k-th batch)."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.averaged_batches = 1

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            mean, var = self._batch_moments(x, mask)
        else:
            mean, var = self.running_mean, self.running_var
        p = torch.sigmoid((x - mean) * torch.rsqrt(var + self.eps))
        return x * (self.alpha + (1.0 - self.alpha) * p)  # = p*x + (1-p)*alpha*x, fewer ops

    def _batch_moments(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.reshape(-1, x.shape[-1])  # (P, F) every position
        weight = torch.ones_like(flat[:, 0]) if mask is None else mask.reshape(-1)  # (P,)
        count = weight.sum().clamp_min(1.0)
        # masked sums as matrix-vector products: far cheaper than mask-multiplying (P, F)
        mean = (weight @ flat) / count  # (F,)
        var = ((weight @ flat.square()) / count - mean.square()).clamp_min(0.0)  # (F,)
        with torch.no_grad():
            unbiased = var * count / (count - 1.0).clamp_min(1.0)
            momentum = self.momentum
            if self.averaged_batches:
                momentum, self.averaged_batches = 1.0 / self.averaged_batches, self.averaged_batches + 1
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(unbiased.detach(), momentum)
        return mean, var


def dice_modules(model: nn.Module) -> list[Dice]:
    return [m for m in model.modules() if isinstance(m, Dice)]


@torch.no_grad()
def reestimate_dice_statistics(model: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]]) -> int:
    """Replace every Dice's running moments by the equal-weight average of its batch moments over
    `batches` (model inputs, e.g. shuffled unbucketed training batches), like BatchNorm's
    `momentum=None`. Only the Dice modules run in training mode; no parameter changes.
    Returns the number of batches seen (0 = no Dice, nothing done)."""
    dices = dice_modules(model)
    if not dices:
        return 0
    was_training = model.training
    model.eval()
    for dice in dices:
        dice.reset_statistics()
        dice.train()
    seen = 0
    try:
        for inputs in batches:
            model(*inputs)
            seen += 1
    finally:
        for dice in dices:
            dice.averaged_batches = 0
        model.train(was_training)
    return seen


class PReLU(nn.Module):
    """PReLU with one slope per last-dim feature; takes (and ignores) a mask like Dice."""

    def __init__(self, num_features: int, init: float = 0.25) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((num_features,), init))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return F.relu(x) - self.alpha * F.relu(-x)


class SlotLinear(nn.Linear):
    """nn.Linear whose input and weight pass through quantization slots (identity in float)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.input_quant: nn.Module = nn.Identity()
        self.weight_quant: nn.Module = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.input_quant(x), self.weight_quant(self.weight), self.bias)


def quant_slots(*names: str) -> nn.ModuleDict:
    return nn.ModuleDict({name: nn.Identity() for name in names})


def make_activation(kind: str, num_features: int) -> nn.Module:
    if kind == "dice":
        return Dice(num_features)
    if kind == "prelu":
        return PReLU(num_features)
    raise ValueError(f"unknown activation {kind!r}; expected 'dice' or 'prelu'")


class LocalActivationUnit(nn.Module):
    """a(e_j, v_A): MLP on concat[e_j, v_A, e_j - v_A, e_j * v_A] -> hidden -> 1 (Fig. 2).

    The first layer is one `nn.Linear(4D, H)`, applied by splitting its weight instead of
    materialising the (B, N, T, 4D) concat: W [e; a; e - a; e * a] = (W_e + W_d) e + (W_a - W_d) a
    + W_p (e * a). The behaviour part is then computed once per user, the ad part once per ad.
    """

    def __init__(self, dim: int, hidden: int, activation: str) -> None:
        super().__init__()
        self.dim = dim
        self.fc = nn.Linear(4 * dim, hidden)
        self.act = make_activation(activation, hidden)
        self.out = SlotLinear(hidden, 1)
        # the three products of the split first layer: operands and their (H, D) weights
        self.quant = quant_slots("behaviours", "ads", "product", "w_behaviour", "w_ad", "w_product")

    def split_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """fc's weight as the (H, D) weights of the behaviour, ad and product terms, each
        through its quantization slot."""
        w_e, w_a, w_d, w_p = self.fc.weight.split(self.dim, dim=1)  # 4 x (H, D)
        q = self.quant
        return q["w_behaviour"](w_e + w_d), q["w_ad"](w_a - w_d), q["w_product"](w_p)

    def forward(self, behaviours: torch.Tensor, ads: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """behaviours (B, T, D), ads (B, N, D), mask (B, N, T) -> weights (B, N, T)."""
        w_behaviour, w_ad, w_product = self.split_weights()
        q = self.quant
        per_behaviour = q["behaviours"](behaviours) @ w_behaviour.T  # (B, T, H)
        per_ad = q["ads"](ads) @ w_ad.T + self.fc.bias  # (B, N, H)
        product = ads.unsqueeze(2) * behaviours.unsqueeze(1)  # (B, N, T, D)
        hidden = q["product"](product) @ w_product.T + per_behaviour.unsqueeze(1) + per_ad.unsqueeze(2)
        hidden = self.act(hidden, mask)  # (B, N, T, H)
        return self.out(hidden).squeeze(-1) * mask  # (B, N, T), exactly 0 on padding


class MLPHead(nn.Module):
    """Fully connected tower (e.g. 200 -> 80) then a single logit."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], activation: str) -> None:
        super().__init__()
        dims = (in_dim, *hidden)
        self.layers = nn.ModuleList(SlotLinear(a, b) for a, b in itertools.pairwise(dims))
        self.acts = nn.ModuleList(make_activation(activation, d) for d in hidden)
        self.out = SlotLinear(dims[-1], 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, N, F), mask (B, N) valid candidates -> logits (B, N)."""
        for layer, act in zip(self.layers, self.acts, strict=True):
            x = act(layer(x), mask)
        return self.out(x).squeeze(-1)


@dataclass
class DinConfig:
    n_items: int  # item ids 1..n_items, 0 = padding
    n_categories: int  # category ids 1..n_categories, 0 = padding
    item_dim: int = 16  # item embedding width
    category_dim: int = 8  # category embedding width; D = item_dim + category_dim
    pooling: Literal["attention", "sum"] = "attention"  # DIN or the paper's BaseModel
    activation: Literal["dice", "prelu"] = "dice"  # in the activation unit and the MLP
    attention_hidden: int = 36  # hidden width of the local activation unit
    mlp_hidden: tuple[int, ...] = field(default=(200, 80))  # output tower
    use_product: bool = True  # feed user_vector * ad_embedding to the MLP as well

    @property
    def embedding_dim(self) -> int:
        return self.item_dim + self.category_dim


# The three models of the quality report: the paper's BaseModel, DIN with PReLU, DIN with Dice.
VARIANTS: dict[str, dict[str, str]] = {
    "base": {"pooling": "sum", "activation": "prelu"},
    "din_prelu": {"pooling": "attention", "activation": "prelu"},
    "din_dice": {"pooling": "attention", "activation": "dice"},
}


def variant_config(variant: str, n_items: int, n_categories: int, **overrides: Any) -> DinConfig:
    """DinConfig of one named variant (see VARIANTS)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    return DinConfig(n_items, n_categories, **{**VARIANTS[variant], **overrides})  # type: ignore[arg-type]


class DeepInterestNetwork(nn.Module):
    """DIN (pooling="attention") or the Embedding&MLP BaseModel (pooling="sum")."""

    input_names: ClassVar[tuple[str, ...]] = (
        "history_items",
        "history_categories",
        "history_mask",
        "candidate_items",
        "candidate_categories",
    )
    output_names: ClassVar[tuple[str, ...]] = ("click_probability", "activation_weights")

    def __init__(self, config: DinConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embedding_dim
        self.item_embedding = nn.Embedding(config.n_items + 1, config.item_dim, padding_idx=0)
        self.category_embedding = nn.Embedding(config.n_categories + 1, config.category_dim, padding_idx=0)
        self.attention = (
            LocalActivationUnit(dim, config.attention_hidden, config.activation)
            if config.pooling == "attention"
            else None
        )
        head_in = (3 if config.use_product else 2) * dim
        self.head = MLPHead(head_in, config.mlp_hidden, config.activation)
        # the attention-weighted sum (eq. 3); sum pooling has no product to quantize
        self.pool_quant = quant_slots(*(("weights", "behaviours") if self.attention is not None else ()))

    # --- checkpoints -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: DinConfig | Mapping[str, Any]) -> DeepInterestNetwork:
        if not isinstance(config, DinConfig):
            values = dict(config)
            values["mlp_hidden"] = tuple(values.get("mlp_hidden", (200, 80)))
            config = DinConfig(**values)
        return cls(config)

    def to_dict(self) -> dict[str, Any]:
        """Config as a plain dict; checkpoint = {"state_dict": ..., "config": to_dict()}."""
        values = asdict(self.config)
        values["mlp_hidden"] = list(values["mlp_hidden"])
        return values

    def embedding_tables(self) -> dict[str, nn.Embedding]:
        return {"item": self.item_embedding, "category": self.category_embedding}

    # --- forward -----------------------------------------------------------------------------
    def embed(self, items: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        """ids (...,) -> e = concat(item, category) embeddings (..., D)."""
        return torch.cat([self.item_embedding(items), self.category_embedding(categories)], -1)

    def forward_features(
        self,
        history_items: torch.Tensor,
        history_categories: torch.Tensor,
        history_mask: torch.Tensor,
        candidate_items: torch.Tensor,
        candidate_categories: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> user vector (B, N, D), ad embedding (B, N, D), activation weights (B, N, T)."""
        behaviours = self.embed(history_items, history_categories)  # (B, T, D)
        ads = self.embed(candidate_items, candidate_categories)  # (B, N, D)
        candidate_mask = (candidate_items > 0).to(history_mask.dtype)  # (B, N)
        mask = history_mask.unsqueeze(1) * candidate_mask.unsqueeze(2)  # (B, N, T)
        if self.attention is None:
            weights = history_mask.unsqueeze(1).expand_as(mask)  # (B, N, T) sum pooling's 1s
            user = (behaviours * history_mask.unsqueeze(-1)).sum(1)  # (B, D) once per user
            return user.unsqueeze(1).expand_as(ads), ads, weights
        weights = self.attention(behaviours, ads, mask)  # (B, N, T)
        q = self.pool_quant
        user = q["weights"](weights) @ q["behaviours"](behaviours)  # (B, N, T) @ (B, T, D) -> (B, N, D)
        return user, ads, weights

    def forward_head(self, user: torch.Tensor, ads: torch.Tensor, candidate_mask: torch.Tensor) -> torch.Tensor:
        """user, ads (B, N, D) -> click logits (B, N)."""
        parts = [user, ads, user * ads] if self.config.use_product else [user, ads]
        return self.head(torch.cat(parts, -1), candidate_mask)  # (B, N, 3D) -> (B, N)

    def logits(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same inputs as `forward`; -> (click logits (B, N), activation weights (B, N, T))."""
        user, ads, weights = self.forward_features(*inputs)
        candidate_mask = (inputs[3] > 0).to(user.dtype)  # (B, N) id 0 = padded candidate slot
        return self.forward_head(user, ads, candidate_mask), weights

    def forward(
        self,
        history_items: torch.Tensor,
        history_categories: torch.Tensor,
        history_mask: torch.Tensor,
        candidate_items: torch.Tensor,
        candidate_categories: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (click_probability (B, N), activation_weights (B, N, T))."""
        logits, weights = self.logits(
            history_items, history_categories, history_mask, candidate_items, candidate_categories
        )
        return torch.sigmoid(logits), weights

    # --- export metadata ---------------------------------------------------------------------
    def example_inputs(
        self,
        batch: int = 2,
        history: int = 7,
        candidates: int = 3,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Valid inputs for tracing/export; row b has history length 1 + b % history."""
        cfg = self.config
        history_items = torch.randint(1, cfg.n_items + 1, (batch, history), generator=generator)
        lengths = 1 + torch.arange(batch) % history  # (B,) every row keeps >= 1 behaviour
        history_mask = (torch.arange(history).unsqueeze(0) < lengths.unsqueeze(1)).float()
        history_items = history_items * history_mask.long()  # (B, T) 0 on padding
        history_categories = (
            torch.randint(1, cfg.n_categories + 1, (batch, history), generator=generator) * history_mask.long()
        )
        candidate_items = torch.randint(1, cfg.n_items + 1, (batch, candidates), generator=generator)
        candidate_categories = torch.randint(1, cfg.n_categories + 1, (batch, candidates), generator=generator)
        return history_items, history_categories, history_mask, candidate_items, candidate_categories

    @staticmethod
    def dynamic_shapes() -> dict[str, dict[int, Any]]:
        """`dynamic_shapes` for `torch.export` / `torch.onnx.export(dynamo=True)`: B, T, N."""
        batch = torch.export.Dim("batch", min=1, max=4096)
        history = torch.export.Dim("history", min=1, max=1024)
        candidates = torch.export.Dim("candidates", min=1, max=4096)
        return {
            "history_items": {0: batch, 1: history},
            "history_categories": {0: batch, 1: history},
            "history_mask": {0: batch, 1: history},
            "candidate_items": {0: batch, 1: candidates},
            "candidate_categories": {0: batch, 1: candidates},
        }


def mini_batch_aware_l2(
    model: DeepInterestNetwork,
    batch_ids: Mapping[str, torch.Tensor],
    frequencies: Mapping[str, torch.Tensor],
    lam: float,
) -> torch.Tensor:
    """Paper eq. 4: lam * sum_{j in batch} ||w_j||^2 / n_j over each embedding table.

    batch_ids maps a table name of `model.embedding_tables()` ("item", "category") to the ids
    seen in the mini-batch (any shape; duplicates and padding 0 are ignored); frequencies maps
    it to a (vocab,) tensor of training-data counts n_j. Rows absent from the batch get no
    gradient, so the cost scales with the batch rather than the vocabulary; a table with `sparse`
    set gets a sparse gradient here too, as from its lookups.
    """
    tables = model.embedding_tables()
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, ids in batch_ids.items():
        present = torch.unique(ids)
        present = present[present > 0]
        rows = F.embedding(present, tables[name].weight, sparse=tables[name].sparse)  # (K, dim)
        counts = frequencies[name][present].to(rows.dtype).clamp_min(1.0)  # (K,)
        total = total + (rows.square().sum(-1) / counts).sum()
    return lam * total
