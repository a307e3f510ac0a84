"""Quantization-aware training with fake quantization (survey III-G).

Every nn.Linear gets fake-quantized weights (int8, per output channel, symmetric) and inputs
(uint8, per tensor, asymmetric, ranges from an exponential moving average of min/max, as
observers do). torch's fake_quantize ops pass gradients straight through inside the clipping
range and zero them outside: the straight-through estimator. After fine-tuning, `strip` puts
plain Linear layers back so the float graph exports and is converted to QDQ by onnxruntime.
"""

from __future__ import annotations

import torch
from torch import nn


class FakeQuantLinear(nn.Linear):
    """A Linear whose weights and inputs are fake-quantized in the forward pass."""

    input_min: torch.Tensor
    input_max: torch.Tensor

    def __init__(self, source: nn.Linear, momentum: float = 0.01):
        super().__init__(source.in_features, source.out_features, bias=source.bias is not None)
        self.load_state_dict(source.state_dict())
        self.momentum = momentum
        self.register_buffer("input_min", torch.tensor(float("inf")))
        self.register_buffer("input_max", torch.tensor(float("-inf")))

    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = x.detach().min(), x.detach().max()
        if torch.isinf(self.input_min):
            self.input_min.copy_(lo)
            self.input_max.copy_(hi)
        else:
            self.input_min.lerp_(lo, self.momentum)
            self.input_max.lerp_(hi, self.momentum)

    def _quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = torch.clamp(self.input_min, max=0.0), torch.clamp(self.input_max, min=0.0)  # 0 exactly representable
        scale = torch.clamp((hi - lo) / 255.0, min=1e-8)
        zero_point = torch.clamp(torch.round(-lo / scale), 0, 255).to(torch.int32)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255)

    def _quantize_weight(self) -> torch.Tensor:
        scale = torch.clamp(self.weight.detach().abs().amax(dim=1) / 127.0, min=1e-8)  # (out,)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(self.weight, scale, zero_point, 0, -127, 127)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._observe(x)
        return nn.functional.linear(self._quantize_input(x), self._quantize_weight(), self.bias)


def prepare_qat(model: nn.Module) -> nn.Module:
    """Swaps every nn.Linear for a FakeQuantLinear (in place); returns the model."""
    for name, child in list(model.named_children()):
        if type(child) is nn.Linear:
            setattr(model, name, FakeQuantLinear(child))
        else:
            prepare_qat(child)
    return model


def strip(model: nn.Module) -> nn.Module:
    """Puts plain nn.Linear layers back, keeping the fine-tuned weights (in place)."""
    for name, child in list(model.named_children()):
        if isinstance(child, FakeQuantLinear):
            plain = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
            plain.load_state_dict({k: v for k, v in child.state_dict().items() if k in ("weight", "bias")})
            setattr(model, name, plain)
        else:
            strip(child)
    return model
