"""The base of every settings group: one concern, read from its own environment variables.

A group is a frozen pydantic-settings class. A field's environment variable is the group's
`env_prefix` followed by the field name (`SURGEFLOW_LLM_` + `timeout_seconds`), or its
`validation_alias` when the name does not follow that pattern (`REDIS_URL`, `OPENAI_API_KEY`,
`BYTEWAX_RECOVERY_DIRECTORY`, ...). `SettingsGroup.variables` lists them; `Settings` uses it to
route flat keyword arguments and the README table is checked against it.
"""

from __future__ import annotations

from pydantic import AliasChoices
from pydantic_settings import BaseSettings, SettingsConfigDict


def conventional(name: str) -> AliasChoices:
    """Accept the conventional name (`REDIS_URL`) and the prefixed one (`SURGEFLOW_REDIS_URL`)."""
    return AliasChoices(name, f"SURGEFLOW_{name}")


class SettingsGroup(BaseSettings):
    """One concern's settings; subclasses set `env_prefix` (default `SURGEFLOW_`)."""

    model_config = SettingsConfigDict(
        env_prefix="SURGEFLOW_", extra="forbid", frozen=True, populate_by_name=True
    )

    @classmethod
    def variables(cls) -> dict[str, tuple[str, ...]]:
        """Field name → the environment variables that set it, the documented one first."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        names: dict[str, tuple[str, ...]] = {}
        for field, info in cls.model_fields.items():
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                names[field] = tuple(str(choice) for choice in alias.choices)
            elif isinstance(alias, str):
                names[field] = (alias,)
            else:
                names[field] = (f"{prefix}{field}".upper(),)
        return names
