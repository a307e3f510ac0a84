"""Settings of the segmentation service; every field reads `INFERSUITE_SEGMENTATION_<FIELD>`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SegmentationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERSUITE_SEGMENTATION_", extra="ignore")

    backbone_model: str = "segmentation-backbone-fp32"
    """Backbone+gate graph in the repository; its meta.json names the encoder-layer and head graphs."""
    max_image_bytes: int = Field(8 * 1024 * 1024, ge=1)
    """Largest encoded (PNG/JPEG) or raw image accepted, in bytes."""
    max_side: int = Field(4096, ge=1)
    """Largest image height or width, in pixels."""
    max_pixels: int = Field(16_777_216, ge=1)
    """Largest height x width; checked from the file header BEFORE decoding (decompression bombs)."""
