"""Quantization-aware fine-tuning of a trained DIN (survey III-G) on its synthetic click log."""

from __future__ import annotations

import numpy as np
import torch

from models.ctr.data import ClickData, iterate_batches
from models.ctr.din import DeepInterestNetwork
from models.ctr.train import _frequency_tensors, _train_step
from models.quantization import prepare_qat, strip


def qat_finetune(model: DeepInterestNetwork, data: ClickData, epochs: int = 1, lr: float = 2e-4,
                 batch_size: int = 64, mba_lambda: float = 0.05, seed: int = 0) -> DeepInterestNetwork:
    """Fine-tunes with fake-quantized Linear layers, then returns the plain float model."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    prepare_qat(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    frequencies = _frequency_tensors(data)
    model.train()
    for _ in range(epochs):
        for batch in iterate_batches(data, data.train_users, batch_size, rng):
            _train_step(model, optimizer, batch, frequencies, mba_lambda)
    strip(model)
    return model.eval()
