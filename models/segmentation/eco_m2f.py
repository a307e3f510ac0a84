"""A scaled-down Mask2Former-style segmenter with ECO-M2F early exits and a gating network.

Yao et al., "Efficient Transformer Encoders for Mask2Former-style models" (ECO-M2F, 2024):
- The backbone gives multi-scale features; the transformer encoder runs over the flattened
  low-resolution scales (here strides 8 and 16, with sine positions and a level embedding, as
  Mask2Former's pixel decoder does), globally or within `attention_radius` pixels (local like
  deformable attention); a shared head turns the encoder output of ANY exit layer
  k in {first_exit .. L} into a segmentation (the paper's exits at layers 2..L).
- Step 1 trains the parent with a loss at every exit (paper sec. 3.2), each exit's loss scaled by
  its depth k as the official code does (models/segmentation/train.py, `exit_weighting`).
- Steps 2-3 (models/segmentation/gating.py): k* = argmax_k (q_k - beta * k) per training image,
  then a small gating network on the encoder's INPUT tokens (pooled to a low resolution)
  predicts k* (paper sec. 3.3-3.4).

The shared head is either a per-pixel FPN head (encoder output fused with the stride-4 backbone
features, one class logit map; the default, cheapest to train) or Mask2Former's query decoder
(`head="query"`, models/segmentation/query_decoder.py: masked cross-attention, Hungarian-matched
set loss, semantic inference by the einsum). Both map (tokens, stride-4 features) -> (B, C, H, W)
class scores, so the exported stages and the service are the same for either.

The model is also split into the stages the service orchestrates (exported as separate graphs):
`BackboneGateStage` (image -> encoder input tokens, stride-4 pixel features, exit logits),
`EncoderLayerStage` (one layer, tokens -> tokens) and `HeadStage` (tokens, pixel features -> logits).
With `gate_after_layer` = k > 0 the backbone stage gives no exit logits and `GateStage` (tokens after
layer k -> exit logits) runs after the k-th encoder-layer stage.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from models.segmentation.matching import decoder_loss
from models.segmentation.query_decoder import QueryHead


@dataclass
class EcoM2FConfig:
    image_size: int = 64  # graphs take (B, 3, image_size, image_size) RGB in [0, 1]
    n_classes: int = 5  # including background (class 0)
    widths: tuple[int, int, int] = (32, 64, 96)  # backbone channels at strides 4, 8, 16
    d_model: int = 64  # encoder token width
    n_heads: int = 4  # attention heads per encoder layer
    ffn_dim: int = 192  # encoder feed-forward hidden width
    n_layers: int = 6  # encoder layers L
    first_exit: int = 2  # shallowest exit (paper: 2); exits are first_exit..n_layers
    head_dim: int = 32  # channels of the per-pixel head
    stage_convs: int = 1  # 3x3 convs per backbone stage; fewer = smaller receptive field, more encoder work
    gate_pool: int = 1  # gate pools each token scale to gate_pool x gate_pool (the study's pick on validation)
    gate_hidden: int = 64  # gate MLP hidden width
    # Which tokens the gate reads: 0 = the encoder's input tokens (the gate runs in the backbone stage);
    # k in 1..first_exit = the tokens after encoder layer k (its own stage, `GateStage`, run after layer k:
    # every image runs those layers anyway, so the gate adds no encoder compute). 2 won on validation and test
    # (`make report-segmentation-gate`, reports/segmentation_gate.md); checkpoints without the field use 0.
    gate_after_layer: int = 2
    # Encoder attention reach in pixels (token centres within this Chebyshev distance attend to each
    # other; 0 = global). Local like Mask2Former's deformable attention, whose sampling points sit
    # near each query's reference point: every layer widens what a token sees, so depth buys context.
    attention_radius: float = 8.0
    head: str = "fpn"  # the exits' shared head: "fpn" (per-pixel) or "query" (Mask2Former decoder)
    n_queries: int = 12  # query head: learnable queries
    decoder_layers: int = 3  # query head: masked-attention decoder layers

    @property
    def exits(self) -> list[int]:
        return list(range(self.first_exit, self.n_layers + 1))

    @property
    def token_grids(self) -> tuple[int, int]:
        return self.image_size // 8, self.image_size // 16  # side of the stride-8 / stride-16 maps

    @property
    def n_tokens(self) -> int:
        a, b = self.token_grids
        return a * a + b * b


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.GELU())


class BackboneStage(nn.Sequential):
    """3x3 conv-BN-GELU layers, the first with stride 2."""

    def __init__(self, c_in: int, c_out: int, depth: int = 2):
        super().__init__(conv_bn(c_in, c_out, 2), *(conv_bn(c_out, c_out) for _ in range(depth - 1)))


def sine_positions(side: int, dim: int) -> torch.Tensor:
    """DETR-style 2D sine positions for a side x side grid -> (side * side, dim)."""
    quarter = dim // 4
    freq = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))  # (dim/4,)
    coords = (torch.arange(side, dtype=torch.float32) + 0.5) / side * 2 * math.pi
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")  # (side, side)
    angles_y, angles_x = ys.reshape(-1, 1) * freq, xs.reshape(-1, 1) * freq  # (T, dim/4)
    return torch.cat([angles_y.sin(), angles_y.cos(), angles_x.sin(), angles_x.cos()], dim=1)


def token_centres(side: int, stride: int) -> torch.Tensor:
    """(side * side, 2) pixel (y, x) centres of a side x side token grid of `stride`."""
    coords = (torch.arange(side, dtype=torch.float32) + 0.5) * stride
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack([ys.reshape(-1), xs.reshape(-1)], dim=1)


def attention_bias(cfg: EcoM2FConfig) -> torch.Tensor:
    """(T, T) additive attention bias: 0 where two tokens' centres lie within attention_radius
    pixels (Chebyshev), a large negative number elsewhere; all zeros for global attention."""
    g8, g16 = cfg.token_grids
    centres = torch.cat([token_centres(g8, 8), token_centres(g16, 16)])  # (T, 2)
    if cfg.attention_radius <= 0:
        return torch.zeros(len(centres), len(centres))
    reach = (centres[:, None] - centres[None]).abs().amax(dim=-1)  # (T, T)
    return torch.where(reach <= cfg.attention_radius, 0.0, -1e4)


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: self-attention over the tokens of both scales (within
    attention_radius), then an FFN."""

    attention_bias: torch.Tensor

    def __init__(self, cfg: EcoM2FConfig):
        super().__init__()
        self.register_buffer("attention_bias", attention_bias(cfg), persistent=False)
        self.n_heads = cfg.n_heads
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ffn = nn.Sequential(nn.Linear(cfg.d_model, cfg.ffn_dim), nn.GELU(), nn.Linear(cfg.ffn_dim, cfg.d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, t, d = tokens.shape  # (B, T, D)
        qkv = self.qkv(self.norm1(tokens)).reshape(b, t, 3, self.n_heads, d // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, heads, T, D/heads)
        # Explicit matmuls rather than scaled_dot_product_attention: torch's FlopCounterMode does
        # not count the CPU SDPA kernel, and the encoder's GFLOPs are what the gate saves.
        scores = (q @ k.transpose(-2, -1)) * (d // self.n_heads) ** -0.5 + self.attention_bias  # (B, heads, T, T)
        attended = scores.softmax(dim=-1) @ v  # (B, heads, T, D/heads)
        tokens = tokens + self.proj(attended.transpose(1, 2).reshape(b, t, d))
        return tokens + self.ffn(self.norm2(tokens))


class SegmentationHead(nn.Module):
    """Shared exit head: encoder tokens + stride-4 features -> per-pixel class logits (FPN-style)."""

    def __init__(self, cfg: EcoM2FConfig):
        super().__init__()
        self.grids = cfg.token_grids
        self.image_size = cfg.image_size
        self.norm = nn.LayerNorm(cfg.d_model)
        self.reduce = nn.Linear(cfg.d_model, cfg.head_dim)  # per token, before upsampling: cheap
        self.lateral = nn.Conv2d(cfg.widths[0], cfg.head_dim, 1)
        self.fuse = conv_bn(cfg.head_dim, cfg.head_dim)
        self.classify = nn.Conv2d(cfg.head_dim, cfg.n_classes, 1)

    def forward(self, tokens: torch.Tensor, pixel_features: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        g8, g16 = self.grids
        tokens = self.reduce(self.norm(tokens))  # (B, T, E)
        e = tokens.shape[2]
        s8 = tokens[:, : g8 * g8].transpose(1, 2).reshape(b, e, g8, g8)  # (B, E, H/8, W/8)
        s16 = tokens[:, g8 * g8 :].transpose(1, 2).reshape(b, e, g16, g16)  # (B, E, H/16, W/16)
        x = s8 + F.interpolate(s16, scale_factor=2.0, mode="nearest")
        x = F.interpolate(x, scale_factor=2.0, mode="nearest") + self.lateral(pixel_features)  # (B, E, H/4, W/4)
        logits = self.classify(self.fuse(x))  # (B, C, H/4, W/4)
        return F.interpolate(
            logits, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )  # (B, C, H, W)

    def loss(self, tokens: torch.Tensor, pixel_features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(tokens, pixel_features), labels)


class MaskClassificationHead(nn.Module):
    """The query head with the model's token positions bound (same call signature as the FPN head)."""

    positions: torch.Tensor

    def __init__(self, cfg: EcoM2FConfig, positions: torch.Tensor):
        super().__init__()
        self.register_buffer("positions", positions, persistent=False)
        self.query = QueryHead(cfg.d_model, cfg.n_classes, cfg.widths[0], cfg.token_grids, cfg.image_size,
                               cfg.n_queries, cfg.decoder_layers, cfg.n_heads, 2 * cfg.d_model)
        self.generator = torch.Generator().manual_seed(0)  # the loss's point samples

    def forward(self, tokens: torch.Tensor, pixel_features: torch.Tensor) -> torch.Tensor:
        return self.query(tokens, pixel_features, self.positions)  # (B, C, H, W) class scores

    def loss(self, tokens: torch.Tensor, pixel_features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return decoder_loss(self.query.predictions(tokens, pixel_features, self.positions), labels, self.generator)


class ExitGate(nn.Module):
    """Gating network: the encoder's input tokens, average-pooled to gate_pool^2 per scale ->
    MLP -> one logit per exit (paper sec. 3.4)."""

    def __init__(self, cfg: EcoM2FConfig):
        super().__init__()
        self.grids, self.pool = cfg.token_grids, cfg.gate_pool
        features = 2 * cfg.gate_pool**2 * cfg.d_model
        self.mlp = nn.Sequential(
            nn.LayerNorm(features),
            nn.Linear(features, cfg.gate_hidden),
            nn.GELU(),
            nn.Linear(cfg.gate_hidden, len(cfg.exits)),
        )

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        b, _, d = tokens.shape
        g8, g16 = self.grids
        s8 = tokens[:, : g8 * g8].transpose(1, 2).reshape(b, d, g8, g8)
        s16 = tokens[:, g8 * g8 :].transpose(1, 2).reshape(b, d, g16, g16)
        p8 = F.avg_pool2d(s8, g8 // self.pool).reshape(b, -1)  # (B, D * pool^2)
        p16 = F.avg_pool2d(s16, g16 // self.pool).reshape(b, -1)
        return torch.cat([p8, p16], dim=1)  # (B, 2 * D * pool^2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.pooled(tokens))  # (B, n_exits)


class EcoM2F(nn.Module):
    positions: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, cfg: EcoM2FConfig):
        super().__init__()
        self.config = cfg
        w = cfg.widths
        # A 4x4 stride-4 patchify stem (as ConvNeXt) instead of two stride-2 stages: the
        # full-resolution convolutions dominated CPU training time for little gain at 64 px.
        stem = nn.Sequential(nn.Conv2d(3, w[0], 4, 4, bias=False), nn.BatchNorm2d(w[0]), nn.GELU(),
                             *(conv_bn(w[0], w[0]) for _ in range(cfg.stage_convs - 1)))
        self.stages = nn.ModuleList([stem, BackboneStage(w[0], w[1], cfg.stage_convs),
                                     BackboneStage(w[1], w[2], cfg.stage_convs)])
        self.project8, self.project16 = nn.Conv2d(w[1], cfg.d_model, 1), nn.Conv2d(w[2], cfg.d_model, 1)
        self.level_embedding = nn.Parameter(torch.zeros(2, cfg.d_model))
        g8, g16 = cfg.token_grids
        self.register_buffer(
            "positions",
            torch.cat([sine_positions(g8, cfg.d_model), sine_positions(g16, cfg.d_model)]),
            persistent=False,
        )
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        if cfg.head not in ("fpn", "query"):
            raise ValueError(f"head {cfg.head!r} is unknown (use fpn or query)")
        self.head: SegmentationHead | MaskClassificationHead = (
            SegmentationHead(cfg) if cfg.head == "fpn" else MaskClassificationHead(cfg, self.positions))
        if not 0 <= cfg.gate_after_layer <= cfg.first_exit:
            raise ValueError(f"gate_after_layer {cfg.gate_after_layer} must lie in 0..first_exit ({cfg.first_exit})")
        self.gate = ExitGate(cfg)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).reshape(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EcoM2F:
        # Checkpoints from before gate_after_layer existed gated the encoder's input tokens.
        config = {"gate_after_layer": 0, **config, "widths": tuple(config["widths"])}
        return cls(EcoM2FConfig(**config))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def forward_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, 3, H, W) in [0, 1] -> encoder input tokens (B, T, D), stride-4 features."""
        x = (image - self.mean) / self.std
        pixel_features = self.stages[0](x)  # (B, w0, H/4, W/4)
        f8 = self.stages[1](pixel_features)  # (B, w1, H/8, W/8)
        f16 = self.stages[2](f8)  # (B, w2, H/16, W/16)
        t8 = self.project8(f8).flatten(2).transpose(1, 2) + self.level_embedding[0]  # (B, T8, D)
        t16 = self.project16(f16).flatten(2).transpose(1, 2) + self.level_embedding[1]  # (B, T16, D)
        return torch.cat([t8, t16], dim=1) + self.positions, pixel_features

    def gate_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Encoder input tokens (B, T, D) -> the tokens the gate reads (after gate_after_layer layers)."""
        for layer in self.layers[: self.config.gate_after_layer]:
            tokens = layer(tokens)
        return tokens

    def forward_exits(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Logits (B, C, H, W) at every exit first_exit..L, from ONE pass through the encoder."""
        tokens, pixel_features = self.forward_features(image)
        logits = []
        for depth, layer in enumerate(self.layers, start=1):
            tokens = layer(tokens)
            if depth >= self.config.first_exit:
                logits.append(self.head(tokens, pixel_features))
        return logits

    def exit_losses(self, image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(E,) the head's training loss at every exit first_exit..L, from one encoder pass."""
        tokens, pixel_features = self.forward_features(image)
        losses = []
        for depth, layer in enumerate(self.layers, start=1):
            tokens = layer(tokens)
            if depth >= self.config.first_exit:
                losses.append(self.head.loss(tokens, pixel_features, labels))
        return torch.stack(losses)

    def forward(self, image: torch.Tensor, exit_layer: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (logits (B, C, H, W) at `exit_layer`, or where the gate says; exit layer per image (B,)).

        Per-image depths in a batch: each image leaves the loop at its own exit (reference
        semantics for the service, not a fast path)."""
        tokens, pixel_features = self.forward_features(image)
        gate_after, first_exit = self.config.gate_after_layer, self.config.first_exit
        # Until the gate has run, every image counts as going to full depth (all run layers <= first_exit).
        fixed = self.config.n_layers if exit_layer is None else exit_layer
        exits = torch.full((image.shape[0],), fixed, dtype=torch.long)
        if exit_layer is None and gate_after == 0:
            exits = self.gate(tokens).argmax(dim=1) + first_exit  # (B,)
        logits = torch.empty(image.shape[0], self.config.n_classes, image.shape[2], image.shape[3])
        for depth, layer in enumerate(self.layers, start=1):
            tokens = layer(tokens)
            if exit_layer is None and depth == gate_after:
                exits = self.gate(tokens).argmax(dim=1) + first_exit
            done = exits == depth
            if done.any():
                logits[done] = self.head(tokens[done], pixel_features[done])
        return logits, exits


# ---- the stages the service runs, each exported as its own graph (dim 0 = batch everywhere)


class ExportStage(nn.Module):
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def dynamic_shapes(self) -> dict[str, dict[int, Any]]:
        batch = torch.export.Dim("batch", min=1, max=1024)
        return {name: {0: batch} for name in self.input_names}


class BackboneGateStage(ExportStage):
    """image (B, 3, H, W) -> tokens (B, T, D), pixel_features (B, w0, H/4, W/4), exit_logits (B, E);
    no exit_logits when the gate reads later tokens (gate_after_layer > 0: `GateStage`)."""

    input_names = ("image",)

    def __init__(self, model: EcoM2F):
        super().__init__()
        self.model = model
        self.gated = model.config.gate_after_layer == 0
        self.output_names = ("tokens", "pixel_features", *(("exit_logits",) if self.gated else ()))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        tokens, pixel_features = self.model.forward_features(image)
        return (tokens, pixel_features, self.model.gate(tokens)) if self.gated else (tokens, pixel_features)

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        size = self.model.config.image_size
        return (torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch)),)


class GateStage(ExportStage):
    """tokens after encoder layer gate_after_layer (B, T, D) -> exit_logits (B, E)."""

    input_names = ("tokens",)
    output_names = ("exit_logits",)

    def __init__(self, model: EcoM2F):
        super().__init__()
        self.gate, self.config = model.gate, model.config

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.gate(tokens)

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        shape = (batch, self.config.n_tokens, self.config.d_model)
        return (torch.randn(*shape, generator=torch.Generator().manual_seed(batch)),)


class EncoderLayerStage(ExportStage):
    """tokens (B, T, D) -> tokens (B, T, D) through encoder layer `index` (1-based)."""

    input_names = ("tokens",)
    output_names = ("tokens_out",)

    def __init__(self, model: EcoM2F, index: int):
        super().__init__()
        self.layer, self.config = model.layers[index - 1], model.config

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.layer(tokens)

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        shape = (batch, self.config.n_tokens, self.config.d_model)
        return (torch.randn(*shape, generator=torch.Generator().manual_seed(batch)),)


class HeadStage(ExportStage):
    """tokens (B, T, D), pixel_features (B, w0, H/4, W/4) -> logits (B, C, H, W)."""

    input_names = ("tokens", "pixel_features")
    output_names = ("logits",)

    def __init__(self, model: EcoM2F):
        super().__init__()
        self.head, self.config = model.head, model.config

    def forward(self, tokens: torch.Tensor, pixel_features: torch.Tensor) -> torch.Tensor:
        return self.head(tokens, pixel_features)

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        cfg, generator = self.config, torch.Generator().manual_seed(batch)
        side = cfg.image_size // 4
        return (
            torch.randn(batch, cfg.n_tokens, cfg.d_model, generator=generator),
            torch.randn(batch, cfg.widths[0], side, side, generator=generator),
        )

    def dynamic_shapes(self) -> dict[str, dict[int, Any]]:
        batch = torch.export.Dim("batch", min=1, max=1024)
        return {"tokens": {0: batch}, "pixel_features": {0: batch}}


def stage_gflops(model: EcoM2F) -> dict[str, float]:
    """GFLOPs per image of each stage, counted by torch's FlopCounterMode (2 x multiply-adds of
    convolutions, linear layers and attention; norms, activations and resizes are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    def count(stage: ExportStage) -> float:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            stage.eval()(*stage.example_inputs(1))
        return counter.get_total_flops() / 1e9

    per_layer = [count(EncoderLayerStage(model, i)) for i in range(1, model.config.n_layers + 1)]
    gate_stage = count(GateStage(model)) if model.config.gate_after_layer else 0.0
    return {
        "backbone_gate": count(BackboneGateStage(model)) + gate_stage,
        "encoder_layer": max(per_layer),
        "head": count(HeadStage(model)),
    }


def gflops_at_exit(costs: dict[str, float], exit_layer: int | torch.Tensor | Any) -> Any:
    """Per-image GFLOPs of a run that leaves the encoder after `exit_layer` layers."""
    return costs["backbone_gate"] + exit_layer * costs["encoder_layer"] + costs["head"]
