"""Quantization-aware fine-tuning of a trained DIN (survey III-G) in the scheme it is deployed with.

Every matrix product of the model reads its operands through a quantization slot
(models/ctr/din.py): the MLP head's and the activation unit's Linear layers, the three products
of the activation unit's split first layer (behaviour, ad and product terms, each with its own
(H, D) weight), and the weighted sum of behaviours (activation x activation). `prepare_qat` puts a
`FakeQuant` in every slot:

- activations: per tensor, ranges from an exponential moving average of the batch min/max while
  training (frozen in eval), asymmetric uint8 or symmetric int8;
- weights: min-max of the current weight, per tensor (asymmetric uint8 or symmetric int8) or per
  output channel (symmetric int8), like onnxruntime's static QDQ conversion.

torch's fake_quantize ops pass gradients straight through inside the range (the straight-through
estimator). A prepared model in eval mode exports (models/ctr/din_rows.py) to a graph with a
QuantizeLinear/DequantizeLinear pair at every slot whose scales and zero points are the QAT
observers' own: what is served is what was fine-tuned, with no fresh calibration. (`freeze` first
turns each FakeQuant into a QuantDequant with constant scales: torch's fake_quantize ops cannot
be exported with dynamic shapes, the quantized_decomposed ops it exports as Q/DQ can.)
`finetune` is the one loop for both QAT and the fp32 control (same batches, epochs and optimizer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.ao.quantization.fx._decomposed
from torch import nn

from models.ctr.data import ClickData, iterate_batches
from models.ctr.din import DeepInterestNetwork, SlotLinear
from models.ctr.train import TrainConfig, frequency_tensors, make_optimizer, train_step


@dataclass(frozen=True)
class QuantScheme:
    """How tensors are quantized; the names match exporters/quantize/recipes.py's conversions."""

    weight_per_channel: bool = False  # per output channel (then symmetric int8)
    weight_symmetric: bool = False  # symmetric int8 (zero point 0) instead of asymmetric uint8
    activation_symmetric: bool = False  # symmetric int8 activations instead of asymmetric uint8


SCHEMES = {
    # per-tensor asymmetric uint8 weights and activations (int8-static-minmax, int8-qat)
    "int8-static-minmax": QuantScheme(),
    # per-channel symmetric int8 weights, symmetric int8 activations (int8-static-perchannel)
    "int8-static-perchannel": QuantScheme(weight_per_channel=True, weight_symmetric=True, activation_symmetric=True),
}


def _affine(lo: torch.Tensor, hi: torch.Tensor, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Range (0 included) -> (scale, zero point int32, qmin, qmax) as onnxruntime computes them."""
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
    if symmetric:
        scale = torch.clamp(torch.maximum(-lo, hi) / 127.0, min=1e-8)
        return scale, torch.zeros_like(scale, dtype=torch.int32), -128, 127
    scale = torch.clamp((hi - lo) / 255.0, min=1e-8)
    zero_point = torch.clamp(torch.round(-lo / scale), 0, 255).to(torch.int32)
    return scale, zero_point, 0, 255


class FakeQuant(nn.Module):
    """Fake-quantizes one operand: an activation (observed range) or a weight (its own min-max)."""

    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, kind: Literal["activation", "weight"], scheme: QuantScheme, momentum: float = 0.01):
        super().__init__()
        self.kind, self.scheme, self.momentum = kind, scheme, momentum
        self.register_buffer("low", torch.tensor(float("inf")))
        self.register_buffer("high", torch.tensor(float("-inf")))

    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = x.detach().min(), x.detach().max()
        if torch.isinf(self.low):
            self.low.copy_(lo)
            self.high.copy_(hi)
        else:
            self.low.lerp_(lo, self.momentum)
            self.high.lerp_(hi, self.momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:  # inference (and export): no straight-through gradient is needed
            x = x.detach()
        if self.kind == "weight":
            return self._weight(x)
        if self.training:  # eval uses the ranges observed in training (the exported constants)
            self._observe(x)
        scale, zero_point, qmin, qmax = _affine(self.low, self.high, self.scheme.activation_symmetric)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)

    def _weight(self, w: torch.Tensor) -> torch.Tensor:
        scheme, detached = self.scheme, w.detach()
        if scheme.weight_per_channel:  # (out, in): one symmetric scale per output row
            scale, zero_point, qmin, qmax = _affine(detached.amin(1), detached.amax(1), True)
            return torch.fake_quantize_per_channel_affine(w, scale, zero_point, 0, qmin, qmax)
        scale, zero_point, qmin, qmax = _affine(detached.min(), detached.max(), scheme.weight_symmetric)
        return torch.fake_quantize_per_tensor_affine(w, scale, zero_point, qmin, qmax)


class QuantDequant(nn.Module):
    """A frozen FakeQuant: constant scale and zero point (per tensor, or per channel on axis 0);
    exports as QuantizeLinear -> DequantizeLinear."""

    scales: torch.Tensor
    zero_points: torch.Tensor

    def __init__(self, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> None:
        super().__init__()
        self.qmin, self.qmax = qmin, qmax
        self.dtype = torch.int8 if qmin < 0 else torch.uint8
        self.per_channel = scale.ndim == 1
        self.scale, self.zero_point = float(scale.reshape(-1)[0]), int(zero_point.reshape(-1)[0])
        self.register_buffer("scales", scale.detach().float().reshape(-1))
        self.register_buffer("zero_points", zero_point.detach().long().reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops, args = torch.ops.quantized_decomposed, (self.qmin, self.qmax, self.dtype)
        if self.per_channel:
            q = ops.quantize_per_channel(x, self.scales, self.zero_points, 0, *args)
            return ops.dequantize_per_channel(q, self.scales, self.zero_points, 0, *args)
        q = ops.quantize_per_tensor(x, self.scale, self.zero_point, *args)
        return ops.dequantize_per_tensor(q, self.scale, self.zero_point, *args)


def _qparams(quantizer: FakeQuant, operand: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    scheme = quantizer.scheme
    if quantizer.kind == "activation":
        return _affine(quantizer.low, quantizer.high, scheme.activation_symmetric)
    assert operand is not None
    w = operand.detach()
    if scheme.weight_per_channel:
        return _affine(w.amin(1), w.amax(1), True)
    return _affine(w.min(), w.max(), scheme.weight_symmetric)


@torch.no_grad()
def freeze(model: DeepInterestNetwork) -> DeepInterestNetwork:
    """Replaces every FakeQuant by a QuantDequant with its current scale and zero point (in place):
    the observed ranges for activations, the fine-tuned weights' ranges for weights."""
    weights = _weight_operands(model)
    for owner, key, _ in _slots(model):
        quantizer = owner[key] if isinstance(owner, nn.ModuleDict) else getattr(owner, key)
        if isinstance(quantizer, FakeQuant):
            frozen = QuantDequant(*_qparams(quantizer, weights.get(id(quantizer))))
            if isinstance(owner, nn.ModuleDict):
                owner[key] = frozen
            else:
                setattr(owner, key, frozen)
    return model


def _weight_operands(model: DeepInterestNetwork) -> dict[int, torch.Tensor]:
    """id(weight FakeQuant) -> the weight it quantizes."""
    found: dict[int, torch.Tensor] = {}
    for module in model.modules():
        if isinstance(module, SlotLinear):
            found[id(module.weight_quant)] = module.weight
    if model.attention is not None:
        unit, (w_e, w_a, w_d, w_p) = model.attention, model.attention.fc.weight.split(model.attention.dim, dim=1)
        for key, value in (("w_behaviour", w_e + w_d), ("w_ad", w_a - w_d), ("w_product", w_p)):
            found[id(unit.quant[key])] = value
    return found


def _slots(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(owner, attribute or ModuleDict key, kind) of every quantization slot in `model`."""
    found: list[tuple[nn.Module, str, str]] = []
    for module in model.modules():
        if isinstance(module, SlotLinear):
            found += [(module, "input_quant", "activation"), (module, "weight_quant", "weight")]
        slot_types = nn.Identity | FakeQuant | QuantDequant
        if isinstance(module, nn.ModuleDict) and all(isinstance(v, slot_types) for v in module.values()):
            found += [(module, key, "weight" if key.startswith("w_") else "activation") for key in module]
    return found


def prepare_qat(model: DeepInterestNetwork, scheme: QuantScheme | str = "int8-static-minmax") -> DeepInterestNetwork:
    """Puts a FakeQuant in every quantization slot (in place); returns the model."""
    scheme = SCHEMES[scheme] if isinstance(scheme, str) else scheme
    for owner, key, kind in _slots(model):
        quantizer = FakeQuant(kind, scheme)  # type: ignore[arg-type]
        if isinstance(owner, nn.ModuleDict):
            owner[key] = quantizer
        else:
            setattr(owner, key, quantizer)
    return model


def strip(model: DeepInterestNetwork) -> DeepInterestNetwork:
    """Puts identity slots back, keeping the fine-tuned float weights (in place)."""
    for owner, key, _ in _slots(model):
        if isinstance(owner, nn.ModuleDict):
            owner[key] = nn.Identity()
        else:
            setattr(owner, key, nn.Identity())
    return model


def fake_quantizers(model: nn.Module) -> list[FakeQuant]:
    return [m for m in model.modules() if isinstance(m, FakeQuant)]


def finetune(model: DeepInterestNetwork, data: ClickData, epochs: int = 2, lr: float = 2e-4,
             scheme: QuantScheme | str | None = None, train_cfg: TrainConfig | None = None,
             seed: int = 0) -> DeepInterestNetwork:
    """Fine-tunes `model` for `epochs` shuffled, unbucketed passes (Adam at `lr`, the training loss
    and regulariser of `train_cfg`); with a `scheme`, fake-quantized (QAT), else the fp32 control.
    Returns the model in eval mode, still carrying its fake quantizers."""
    cfg = train_cfg or TrainConfig()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if scheme is not None:
        prepare_qat(model, scheme)
    optimizer = make_optimizer(model, cfg, lr)
    frequencies = frequency_tensors(data)
    model.train()
    for _ in range(epochs):
        for batch in iterate_batches(data, data.train_users, cfg.batch_size, rng):
            train_step(model, optimizer, batch, frequencies, cfg, rng)
    return model.eval()


def qat_finetune(model: DeepInterestNetwork, data: ClickData, epochs: int = 1, lr: float = 2e-4,
                 scheme: QuantScheme | str = "int8-static-minmax", seed: int = 0) -> DeepInterestNetwork:
    """QAT fine-tune, then the plain float model (for a conversion that calibrates afresh)."""
    return strip(finetune(model, data, epochs, lr, scheme, seed=seed))
