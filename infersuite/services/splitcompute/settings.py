"""Settings of the splitcompute service; every field reads `INFERSUITE_SPLITCOMPUTE_<FIELD>`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SplitComputeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERSUITE_SPLITCOMPUTE_", extra="ignore")

    model: str = "splitcompute-server-fp32"
    """Server graph (decoder + tail) whose codec is the current one that GetCodec announces."""
    extra_models: list[str] = []
    """Further server graphs, each with its own codec version (e.g. older encoders still in the field)."""
    encoder_model: str = "splitcompute-encoder-fp32"
    """The edge graph of the current codec in the repository, named to devices by GetCodec."""
    max_payload_bytes: int = Field(64 * 1024, ge=32)
    """Largest payload accepted; larger ones are rejected before parsing."""
    max_latent_elements: int = Field(1 << 16, ge=1)
    """Largest latent (C*h*w) a header may declare; checked before anything is allocated."""
