"""DIN in the "rows" layout: the serving graph that batches ragged requests without padding
candidates.

The training layout (models/ctr/din.py) scores a (B, N) grid of candidates against a (B, T)
history, so a batch of ragged requests costs B x N_max x T_max. Here every candidate is one row
that carries the index of its user's history (`candidate_user`), so a batch of requests costs
sum(N_i) x T_max: the runtime concatenates the requests' candidate rows and stacks their
histories (infersuite/services/runtime/batch_layout.py, meta.json `batching.rows`).

Same weights, same maths (paper eq. 3 and Fig. 2): the behaviour part of the activation unit's
first layer is computed once per user and gathered to its rows, the ad part once per row.
Inference only (Dice uses its running moments).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from models.ctr.din import DeepInterestNetwork


class DinRows(nn.Module):
    """Wraps a trained DeepInterestNetwork; forward takes the rows layout."""

    # The training layout's inputs (now 1-D candidates) plus each candidate's user index; same outputs.
    input_names: ClassVar[tuple[str, ...]] = (*DeepInterestNetwork.input_names, "candidate_user")
    output_names: ClassVar[tuple[str, ...]] = DeepInterestNetwork.output_names

    def __init__(self, din: DeepInterestNetwork) -> None:
        super().__init__()
        self.din = din.eval()

    @property
    def config(self) -> Any:
        return self.din.config

    def _attention(self, behaviours: torch.Tensor, ads: torch.Tensor, user: torch.Tensor,
                   row_mask: torch.Tensor) -> torch.Tensor:
        """behaviours (U, T, D), ads (R, D), user (R,), row_mask (R, T) -> weights (R, T)."""
        unit = self.din.attention
        assert unit is not None
        w_behaviour, w_ad, w_product = unit.split_weights()  # 3 x (H, D), through their slots
        q = unit.quant
        per_behaviour = q["behaviours"](behaviours) @ w_behaviour.T  # (U, T, H) once per user
        per_ad = q["ads"](ads) @ w_ad.T + unit.fc.bias  # (R, H) once per candidate
        row_behaviours = behaviours[user]  # (R, T, D)
        product = ads.unsqueeze(1) * row_behaviours  # (R, T, D)
        hidden = q["product"](product) @ w_product.T + per_behaviour[user] + per_ad.unsqueeze(1)  # (R, T, H)
        hidden = unit.act(hidden, row_mask)
        return unit.out(hidden).squeeze(-1) * row_mask  # (R, T), exactly 0 on padding

    def forward(
        self,
        history_items: torch.Tensor,
        history_categories: torch.Tensor,
        history_mask: torch.Tensor,
        candidate_items: torch.Tensor,
        candidate_categories: torch.Tensor,
        candidate_user: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (click_probability (R,), activation_weights (R, T))."""
        din = self.din
        behaviours = din.embed(history_items, history_categories)  # (U, T, D)
        ads = din.embed(candidate_items, candidate_categories)  # (R, D)
        row_mask = history_mask[candidate_user]  # (R, T)
        if din.attention is None:  # BaseModel: sum pooling, weights are the mask's 1s
            weights = row_mask
            user_vectors = (behaviours * history_mask.unsqueeze(-1)).sum(1)[candidate_user]  # (R, D)
        else:
            weights = self._attention(behaviours, ads, candidate_user, row_mask)  # (R, T)
            q = din.pool_quant
            pooled = q["weights"](weights.unsqueeze(1)) @ q["behaviours"](behaviours[candidate_user])  # (R, 1, D)
            user_vectors = pooled.squeeze(1)  # (R, D)
        parts = [user_vectors, ads, user_vectors * ads] if din.config.use_product else [user_vectors, ads]
        ones = torch.ones_like(candidate_items, dtype=history_mask.dtype)  # (R,) every row is real
        logits = din.head(torch.cat(parts, -1), ones)  # (R, 3D) -> (R,)
        return torch.sigmoid(logits), weights

    # --- export metadata ---------------------------------------------------------------------
    def example_inputs(
        self,
        users: int = 2,
        history: int = 7,
        rows_per_user: tuple[int, ...] = (3, 2),
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Valid inputs: user u has history length 1 + u % history and rows_per_user[u % len] rows."""
        grid = self.din.example_inputs(users, history, 1, generator=generator)
        history_items, history_categories, history_mask = grid[:3]
        counts = [rows_per_user[u % len(rows_per_user)] for u in range(users)]
        total = sum(counts)
        cfg = self.din.config
        candidate_items = torch.randint(1, cfg.n_items + 1, (total,), generator=generator)
        candidate_categories = torch.randint(1, cfg.n_categories + 1, (total,), generator=generator)
        candidate_user = torch.repeat_interleave(torch.arange(users), torch.tensor(counts))  # (R,)
        return history_items, history_categories, history_mask, candidate_items, candidate_categories, candidate_user

    @staticmethod
    def dynamic_shapes() -> dict[str, dict[int, Any]]:
        """`dynamic_shapes` for the dynamo exporter: users U, history T, rows R."""
        users = torch.export.Dim("users", min=1, max=4096)
        history = torch.export.Dim("history", min=1, max=1024)
        rows = torch.export.Dim("rows", min=1, max=65536)
        return {
            "history_items": {0: users, 1: history},
            "history_categories": {0: users, 1: history},
            "history_mask": {0: users, 1: history},
            "candidate_items": {0: rows},
            "candidate_categories": {0: rows},
            "candidate_user": {0: rows},
        }


def grid_to_rows(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Training-layout inputs (B, T) + (B, N) -> the same requests in the rows layout (every
    candidate slot becomes a row; the grid's padded candidates, id 0, are dropped)."""
    history_items, history_categories, history_mask, candidate_items, candidate_categories = inputs
    keep = candidate_items > 0  # (B, N)
    users = torch.arange(candidate_items.shape[0]).unsqueeze(1).expand_as(candidate_items)  # (B, N)
    return (history_items, history_categories, history_mask, candidate_items[keep], candidate_categories[keep],
            users[keep])
