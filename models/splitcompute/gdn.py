"""Generalized divisive normalization (GDN) and its inverse.

Balle, Laparra, Simoncelli, "Density modeling of images using a generalized normalization
transformation" (ICLR 2016) and "End-to-end optimized image compression" (ICLR 2017), eq. 2:

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij * x_j^2)          (GDN, the analysis transform)
    x_i = y_i * sqrt(beta_i + sum_j gamma_ij * y_j^2)          (IGDN, the synthesis transform)

beta and gamma must stay positive: they are stored as square roots (plus a small pedestal on
beta), the reparameterisation of the ICLR 2017 code. The sum over j is a 1x1 convolution, so
the layer exports to ONNX as Mul / Conv / Sqrt / Div.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

BETA_FLOOR = 1e-6  # keeps the denominator away from 0


class GDN(nn.Module):
    def __init__(self, channels: int, inverse: bool = False, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_root = nn.Parameter(torch.ones(channels))
        self.gamma_root = nn.Parameter(torch.sqrt(torch.eye(channels) * gamma_init + 1e-8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        beta = self.beta_root**2 + BETA_FLOOR  # (C,)
        gamma = (self.gamma_root**2).reshape(channels, channels, 1, 1)  # 1x1 conv weight (C_out, C_in, 1, 1)
        norm = torch.sqrt(F.conv2d(x * x, gamma, beta))  # (B, C, H, W)
        return x * norm if self.inverse else x / norm
