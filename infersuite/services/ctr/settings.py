"""Settings of the ctr service; every field reads `INFERSUITE_CTR_<FIELD>`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CtrSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERSUITE_CTR_", extra="ignore")

    model: str = "din"
    """Model answering requests that name none: a model of the repository, or an alias from its
    aliases.json ("din" = the fastest DIN recipe that passed its quality gate)."""
    extra_models: list[str] = []
    """Further DIN models loaded for requests that name them, e.g. '["din-fp32", "din-int8-qat"]'."""
    max_history: int = Field(100, ge=1)
    """Longest behaviour history used; longer ones keep their most recent behaviours."""
    max_candidates: int = Field(500, ge=1)
    """Most candidates one request may score."""
    max_id_bytes: int = Field(256, ge=1)
    """Longest string id (UTF-8 bytes) a request may send: Score's `*_keys` fields and OIP BYTES id tensors
    of a model whose vocabulary holds strings. A model listing a longer id is refused at load."""
    max_history_keys: int = Field(1000, ge=1)
    """Most string behaviours one Score request may send (every id is looked up, as integer ids are
    checked, before the history is cut to max_history; this bounds that work)."""
