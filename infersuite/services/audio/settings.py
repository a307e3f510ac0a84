"""Settings of the audio service; every field reads `INFERSUITE_AUDIO_<FIELD>`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AudioSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERSUITE_AUDIO_", extra="ignore")

    passt_model: str = "audio-passt-fp32"
    """Repository model answering embedder="passt"."""
    bow_model: str = "audio-bow-fp32"
    """Repository model answering embedder="bow"."""
    default_embedder: str = "passt"
    """Embedder used when a request names none: "passt" or "bow"."""
    max_duration_s: float = Field(default=600.0, gt=0)
    """Longest audio accepted, per request or per stream (checked from the declared length, before decoding)."""
    min_sample_rate: int = Field(default=4000, ge=1)
    """Lowest input sample rate accepted (Hz)."""
    max_sample_rate: int = Field(default=192000, ge=1)
    """Highest input sample rate accepted (Hz)."""
    max_channels: int = Field(default=32, ge=1)
    """Most interleaved channels accepted (they are averaged)."""
    default_hop_ms: float = Field(default=50.0, gt=0)
    """Timestamp hop when a request sets none (HEAR's common 50 ms)."""
    timestamp_window_ms: float = Field(default=500.0, gt=0, le=1000)
    """Audio each timestamp embedding sees, centred on its timestamp (the rest of the 1 s model window is silence)."""
    min_hop_ms: float = Field(default=10.0, gt=0)
    """Smallest timestamp hop accepted."""
    max_timestamps: int = Field(default=20000, ge=1)
    """Most timestamp embeddings one request may ask for (duration / hop + 1)."""
    batch_windows: int = Field(default=32, ge=1)
    """1 s windows per model execution (long audio runs as several batches of this size)."""
