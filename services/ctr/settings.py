"""Settings of the ctr service; every field reads `INFERSUITE_CTR_<FIELD>`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CtrSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERSUITE_CTR_", extra="ignore")

    model: str = "din-fp32"
    """Model answering requests that name none (a model in the repository)."""
    extra_models: list[str] = []
    """Further DIN models (e.g. other quantization recipes) loaded for requests that name them."""
    max_history: int = Field(100, ge=1)
    """Longest behaviour history used; longer ones keep their most recent behaviours."""
    max_candidates: int = Field(500, ge=1)
    """Most candidates one request may score."""
