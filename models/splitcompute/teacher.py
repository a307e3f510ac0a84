"""The teacher CNN of the split-computing family, built as stem + tail.

The Entropic Student (Matsubara et al., "Supervised Compression for Resource-Constrained Edge
Computing Systems", WACV 2022, section 3) replaces a teacher's first layers by an encoder /
entropy bottleneck / decoder whose decoder reproduces the teacher's intermediate features, and
keeps the teacher's remaining layers as the student's tail. So the teacher is written as a
`stem` (input -> the features the student distils, (B, 48, 12, 12) by default) and a `tail`
(those features -> class logits) that the student copies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    padding = kernel // 2 if kernel % 2 else (kernel - stride) // 2  # output = input / stride
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


@dataclass(frozen=True)
class TeacherConfig:
    n_classes: int = 10  # output classes
    patch: int = 4  # stride of the first convolution (96 -> 24)
    first_kernel: int = 8  # its kernel: two strides wide, so it sees a whole period of either grating
    stem_channels: tuple[int, int, int] = (24, 32, 48)  # stem widths (stride 4, 1, 2); the last is distilled
    tail_channels: tuple[int, int] = (64, 96)  # tail widths (stride 1, 2, then 1 at the second width)


def teacher_stem(cfg: TeacherConfig) -> nn.Sequential:
    """Image (B, 3, H, W) -> features (B, C_f, H/8, W/8)."""
    c1, c2, c3 = cfg.stem_channels
    return nn.Sequential(conv_bn_relu(3, c1, cfg.patch, kernel=cfg.first_kernel), conv_bn_relu(c1, c2),
                         conv_bn_relu(c2, c3, 2))


class TeacherTail(nn.Module):
    """Teacher features (B, C_f, 12, 12) -> logits (B, n_classes)."""

    def __init__(self, cfg: TeacherConfig):
        super().__init__()
        c0, (c1, c2) = cfg.stem_channels[-1], cfg.tail_channels
        self.features = nn.Sequential(
            conv_bn_relu(c0, c1), conv_bn_relu(c1, c2, 2), conv_bn_relu(c2, c2)
        )
        self.head = nn.Linear(c2, cfg.n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = self.features(features).mean(dim=(2, 3))  # (B, C3)
        return self.head(pooled)


class TeacherCNN(nn.Module):
    input_names = ("image",)
    output_names = ("logits",)

    def __init__(self, cfg: TeacherConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or TeacherConfig()
        self.stem = teacher_stem(cfg)
        self.tail = TeacherTail(cfg)

    @classmethod
    def from_config(cls, config: dict) -> TeacherCNN:
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        return cls(TeacherConfig(**fields))

    def config_dict(self) -> dict:
        return asdict(self.config)

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> the distilled features (B, C_f, H/8, W/8)."""
        return self.stem(image)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.tail(self.forward_features(image))

    def example_inputs(self, batch: int = 2, size: int = 96) -> tuple[torch.Tensor]:
        return (torch.rand(batch, 3, size, size),)

    def dynamic_shapes(self) -> dict:
        return {"image": {0: torch.export.Dim("batch", min=1, max=1024)}}
