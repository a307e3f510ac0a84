"""The factorized-prior entropy bottleneck, written in torch.

Balle et al., "Variational image compression with a scale hyperprior" (ICLR 2018), appendix
6.1: each latent channel c has its own learned univariate density, given by a cumulative
c(x) = sigmoid(f_K(...f_1(x))) where f_k(x) = g_k(H_k x + b_k), g_k(x) = x + tanh(a_k) * tanh(x)
and H_k = softplus(raw H_k) >= 0 keeps c monotone. In training the latent y is replaced by
y + u, u ~ U(-0.5, 0.5) (eq. 4 of Balle et al., ICLR 2017), whose density is the learned
density convolved with the unit box: p(y~) = c(y~ + 0.5) - c(y~ - 0.5). At inference the
latent is rounded to integers and that same expression is the probability mass of each
integer, tabulated per channel (`pmf_table`) for the range coder.

The rate term -log2 p(y~) is what the Entropic Student's stage 1 weighs with beta
(Matsubara et al., WACV 2022, eq. 2).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LIKELIHOOD_FLOOR = 1e-9  # keeps log2 finite; the coder gives every symbol at least its own floor too


class FactorizedPrior(nn.Module):
    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        widths = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(widths) - 1):
            init = math.log(math.expm1(1.0 / scale / widths[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[i + 1], widths[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, widths[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))

    def _logits_cumulative(self, values: torch.Tensor) -> torch.Tensor:
        """(C, 1, N) -> logit of the cumulative c(x) per channel, (C, 1, N)."""
        x = values
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(matrix), x) + bias
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def _box_likelihood(self, values: torch.Tensor) -> torch.Tensor:
        """c(x + 0.5) - c(x - 0.5) for values (C, 1, N), computed on the side of the sigmoid
        where it does not saturate (the sign trick of Balle's reference code)."""
        lower = self._logits_cumulative(values - 0.5)
        upper = self._logits_cumulative(values + 0.5)
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def likelihood(self, latent: torch.Tensor) -> torch.Tensor:
        """Per-element likelihood of a (B, C, H, W) latent under the per-channel densities."""
        b, c, h, w = latent.shape
        values = latent.permute(1, 0, 2, 3).reshape(c, 1, -1)  # (C, 1, B*H*W)
        lik = self._box_likelihood(values).clamp_min(LIKELIHOOD_FLOOR)
        return lik.reshape(c, b, h, w).permute(1, 0, 2, 3)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: (y + uniform noise, its likelihood). Eval: (round(y), its probability mass)."""
        noisy = latent + torch.empty_like(latent).uniform_(-0.5, 0.5) if self.training else torch.round(latent)
        return noisy, self.likelihood(noisy)

    @torch.no_grad()
    def pmf_table(self, max_radius: int = 64, tail_mass: float = 1e-7) -> tuple[np.ndarray, int]:
        """Probability mass of every integer in [-R, R] per channel -> ((C, 2R + 1) float64, R).

        R is the smallest radius whose two tails together hold less than `tail_mass` in every
        channel; the codec clips symbols to [-R, R] (the same clip the reference pipeline does).
        """
        grid = torch.arange(-max_radius, max_radius + 1, dtype=torch.float32)
        values = grid.expand(self.channels, 1, -1).contiguous()  # (C, 1, 2M+1)
        pmf = self._box_likelihood(values)[:, 0, :].double()  # (C, 2M+1)
        radius = max_radius
        for r in range(1, max_radius + 1):
            inside = pmf[:, max_radius - r : max_radius + r + 1].sum(dim=1)
            if bool((1.0 - inside < tail_mass).all()):
                radius = r
                break
        table = pmf[:, max_radius - radius : max_radius + radius + 1]
        return table.numpy(), radius


def bits(likelihood: torch.Tensor) -> torch.Tensor:
    """Total information content -log2 p, in bits, of every element of `likelihood`."""
    return -torch.log2(likelihood).sum()
