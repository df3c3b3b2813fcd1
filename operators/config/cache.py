"""Redis (`SURGEFLOW_REDIS_*`, `REDIS_URL`) and the LLM answer cache (`SURGEFLOW_CACHE_*`)."""

from __future__ import annotations

from typing import Optional

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from operators.config.group import SettingsGroup, conventional


class RedisSettings(SettingsGroup):
    """The shared Redis (unset `REDIS_URL` = the cache stays in process)."""

    model_config = SettingsConfigDict(env_prefix="SURGEFLOW_REDIS_")

    url: Optional[SecretStr] = Field(
        default=None, validation_alias=conventional("REDIS_URL"), description="may hold a password"
    )
    timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    retry_seconds: float = Field(
        default=5.0, gt=0, le=600, description="pause before Redis is tried again after a failure"
    )

    @property
    def enabled(self) -> bool:
        return bool(self.url)


class CacheSettings(SettingsGroup):
    """The LLM prompt and embedding cache."""

    model_config = SettingsConfigDict(env_prefix="SURGEFLOW_CACHE_")

    max_entries: int = Field(default=50_000, ge=0)
    ttl_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    front_entries: int = Field(
        default=10_000, ge=0, description="in-process LRU entries in front of Redis; 0 = none"
    )
