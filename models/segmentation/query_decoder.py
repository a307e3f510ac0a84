"""A small Mask2Former transformer decoder: the query head the ECO-M2F exits can share.

Cheng et al., "Masked-attention Mask Transformer for Universal Image Segmentation" (CVPR 2022):
- N learnable queries (features + positions) pass through L decoder layers; each layer does
  MASKED cross-attention over one scale of the multi-scale encoder tokens (round robin, coarse
  first: stride 16, stride 8, stride 16, ...; sec. 3.2.1), where a query sees only the tokens its
  previous mask prediction covers (sigmoid >= 0.5; a query whose mask is empty sees all), then
  self-attention, then an FFN (the paper's order, sec. 3.2.2).
- After the learnable queries and after every layer, each query predicts class logits over
  C classes + "no object" and a mask = dot product of its embedding with the stride-4 per-pixel
  mask features (eq. 1's mask branch); all but the last prediction are auxiliary losses.
- Semantic inference (sec. 4): logits_c(x) = sum_q softmax(class_q)_c * sigmoid(mask_q(x)), the
  standard einsum, computed inside the graph so the served head still returns (B, C, H, W).
Training losses (Hungarian matching, point-sampled BCE + dice) live in models/segmentation/matching.py.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    """Multi-head attention with explicit matmuls (FlopCounterMode counts them; see EncoderLayer)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = query.shape
        h = self.heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(b, x.shape[1], h, d // h).transpose(1, 2)  # (B, heads, n, d/heads)

        scores = split(self.q(query)) @ split(self.k(key)).transpose(-2, -1) * (d // h) ** -0.5  # (B, h, N, T)
        if bias is not None:
            scores = scores + bias[:, None]  # (B, 1, N, T) broadcast over heads
        attended = scores.softmax(dim=-1) @ split(self.v(value))  # (B, h, N, d/h)
        return self.out(attended.transpose(1, 2).reshape(b, n, d))


class DecoderLayer(nn.Module):
    """Masked cross-attention -> self-attention -> FFN, post-norm as in Mask2Former."""

    def __init__(self, dim: int, heads: int, ffn_dim: int):
        super().__init__()
        self.cross, self.self_attn = Attention(dim, heads), Attention(dim, heads)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        queries = self.norms[0](queries + self.cross(queries + query_pos, memory + memory_pos, memory, bias))
        q = queries + query_pos
        queries = self.norms[1](queries + self.self_attn(q, q, queries))
        return self.norms[2](queries + self.ffn(queries))


class QueryDecoder(nn.Module):
    """tokens (B, T, D) of both scales + mask features (B, D, H/4, W/4) -> per query class logits and
    mask logits at every prediction step (the last one is the output)."""

    def __init__(self, dim: int, n_classes: int, n_queries: int, n_layers: int, heads: int, ffn_dim: int,
                 grids: tuple[int, int]):
        super().__init__()
        self.grids = grids
        self.query_feat, self.query_pos = nn.Embedding(n_queries, dim), nn.Embedding(n_queries, dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, ffn_dim) for _ in range(n_layers))
        self.norm = nn.LayerNorm(dim)
        self.classify = nn.Linear(dim, n_classes + 1)  # + "no object"
        self.mask_embed = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def predict(self, queries: torch.Tensor, mask_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        queries = self.norm(queries)
        masks = torch.einsum("bqd,bdhw->bqhw", self.mask_embed(queries), mask_features)  # (B, Q, H/4, W/4)
        return self.classify(queries), masks  # (B, Q, C+1), (B, Q, H/4, W/4)

    def _scale(self, tokens: torch.Tensor, positions: torch.Tensor, layer: int) -> tuple[torch.Tensor, ...]:
        g8, g16 = self.grids
        if layer % 2 == 0:  # coarse first
            return tokens[:, g8 * g8:], positions[g8 * g8:], torch.tensor(g16)
        return tokens[:, :g8 * g8], positions[:g8 * g8], torch.tensor(g8)

    @staticmethod
    def attention_bias(masks: torch.Tensor, side: int) -> torch.Tensor:
        """(B, Q, side*side) additive bias: -1e4 where the query's mask (resized to the scale) is
        below 0.5; a query with an empty mask sees every token (Mask2Former's fix for empty masks)."""
        resized = F.interpolate(masks, size=(side, side), mode="bilinear", align_corners=False).flatten(2)
        hidden = resized.sigmoid() < 0.5  # (B, Q, T_scale)
        hidden = hidden & ~hidden.all(dim=-1, keepdim=True)
        return hidden.float() * -1e4

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor,
                mask_features: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        b = tokens.shape[0]
        queries = self.query_feat.weight[None].repeat(b, 1, 1)  # (B, Q, D); a copy, not a view (FlopCounterMode)
        query_pos = self.query_pos.weight[None].repeat(b, 1, 1)
        predictions = [self.predict(queries, mask_features)]
        for index, layer in enumerate(self.layers):
            memory, memory_pos, side = self._scale(tokens, positions, index)
            bias = self.attention_bias(predictions[-1][1], int(side))
            queries = layer(queries, query_pos, memory, memory_pos[None], bias)
            predictions.append(self.predict(queries, mask_features))
        return predictions


def semantic_logits(class_logits: torch.Tensor, mask_logits: torch.Tensor, size: int) -> torch.Tensor:
    """Mask2Former's semantic inference: (B, Q, C+1), (B, Q, h, w) -> (B, C, size, size) scores
    sum_q p_q(c) * sigmoid(m_q), "no object" dropped; masks upsampled bilinearly first."""
    masks = F.interpolate(mask_logits, size=(size, size), mode="bilinear", align_corners=False).sigmoid()
    probabilities = class_logits.softmax(dim=-1)[..., :-1]  # (B, Q, C)
    return torch.einsum("bqc,bqhw->bchw", probabilities, masks)


class QueryHead(nn.Module):
    """The Mask2Former head of an ECO-M2F exit: a per-pixel decoder (the encoder's two token scales
    fused FPN-style with the stride-4 backbone features into mask features) + the query decoder."""

    def __init__(self, dim: int, n_classes: int, pixel_channels: int, grids: tuple[int, int], image_size: int,
                 n_queries: int = 12, n_layers: int = 3, heads: int = 4, ffn_dim: int = 128):
        super().__init__()
        self.grids, self.image_size = grids, image_size
        self.norm = nn.LayerNorm(dim)
        self.lateral = nn.Conv2d(pixel_channels, dim, 1)
        # 1x1 convs, not Mask2Former's 3x3: at 64 channels a 3x3 conv on the stride-4 map would cost
        # more than two encoder layers, and the head runs at every exit.
        self.fuse = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.GroupNorm(8, dim), nn.GELU(),
                                  nn.Conv2d(dim, dim, 1))
        self.decoder = QueryDecoder(dim, n_classes, n_queries, n_layers, heads, ffn_dim, grids)

    def mask_features(self, tokens: torch.Tensor, pixel_features: torch.Tensor) -> torch.Tensor:
        b, _, d = tokens.shape
        g8, g16 = self.grids
        s8 = tokens[:, : g8 * g8].transpose(1, 2).reshape(b, d, g8, g8)  # (B, D, H/8, W/8)
        s16 = tokens[:, g8 * g8:].transpose(1, 2).reshape(b, d, g16, g16)  # (B, D, H/16, W/16)
        x = s8 + F.interpolate(s16, scale_factor=2.0, mode="nearest")
        x = F.interpolate(x, scale_factor=2.0, mode="nearest") + self.lateral(pixel_features)  # (B, D, H/4, W/4)
        return self.fuse(x)

    def predictions(self, tokens: torch.Tensor, pixel_features: torch.Tensor,
                    positions: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        tokens = self.norm(tokens)
        return self.decoder(tokens, positions, self.mask_features(tokens, pixel_features))

    def forward(self, tokens: torch.Tensor, pixel_features: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        class_logits, mask_logits = self.predictions(tokens, pixel_features, positions)[-1]
        return semantic_logits(class_logits, mask_logits, self.image_size)  # (B, C, H, W)
