"""Every setting of Surgeflow, read from environment variables, grouped by concern.

`Settings` holds one frozen pydantic-settings group per concern (`settings.llm.timeout_seconds`,
`settings.kafka.bootstrap_servers`, `settings.shipments.window_minutes`, ...); each group reads its
own variables (see `operators.config.group`), with the same names as the README's configuration
table. An unset service means its embedded default: no `KAFKA_BOOTSTRAP_SERVERS` reads the bundled
surge generator (or `SURGEFLOW_INPUT_FILE`) and writes JSON lines to stdout (or
`SURGEFLOW_OUTPUT_DIR`); no `REDIS_URL` keeps the cache in process; no
`OPENAI_BASE_URL`/`OPENAI_API_KEY` uses the rules engine instead of an LLM.

Keyword arguments (tests, scripts): `Settings(llm_timeout_seconds=2, redis_url=None)` takes each
setting by its flat name, the name of its environment variable in lower case without
`SURGEFLOW_` (`SURGEFLOW_LLM_TIMEOUT_SECONDS` → `llm_timeout_seconds`, `REDIS_URL` → `redis_url`,
`BYTEWAX_SNAPSHOT_INTERVAL` → `bytewax_snapshot_interval`), or a whole group
(`Settings(llm=LLMSettings(...))`); what is not given is read from the environment, as before.
`settings.replaced(**flat)` is a copy with some settings changed.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails

from operators.config.cache import CacheSettings, RedisSettings
from operators.config.domains import ShipmentsSettings, TicketsSettings
from operators.config.group import SettingsGroup
from operators.config.io import EVENT_TIME_CEILING, EVENT_TIME_FLOOR, IOSettings, SurgeSettings
from operators.config.kafka import KafkaSettings, TopicSettings
from operators.config.llm import DEFAULT_PRICES, LinkDomain, LLMSettings, Price
from operators.config.process import ProcessSettings, RecoverySettings

__all__ = [
    "DEFAULT_PRICES",
    "EVENT_TIME_CEILING",
    "EVENT_TIME_FLOOR",
    "CacheSettings",
    "IOSettings",
    "KafkaSettings",
    "LLMSettings",
    "LinkDomain",
    "Price",
    "ProcessSettings",
    "RecoverySettings",
    "RedisSettings",
    "Settings",
    "SettingsGroup",
    "ShipmentsSettings",
    "SurgeSettings",
    "TicketsSettings",
    "TopicSettings",
    "flat_names",
]


class Settings(BaseModel):
    """Configuration of both flows, one group per concern."""

    model_config = ConfigDict(frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    io: IOSettings = Field(default_factory=IOSettings)
    surge: SurgeSettings = Field(default_factory=SurgeSettings)
    shipments: ShipmentsSettings = Field(default_factory=ShipmentsSettings)
    tickets: TicketsSettings = Field(default_factory=TicketsSettings)
    recovery: RecoverySettings = Field(default_factory=RecoverySettings)
    process: ProcessSettings = Field(default_factory=ProcessSettings)

    def __init__(self, **values: Any) -> None:
        """Build every group from its environment variables and the keywords routed to it
        (flat names, see the module docstring); `_env_file` and other `_` options go to every
        group. Errors of all groups come together in one `ValidationError`."""
        super().__init__(**_groups(type(self).__name__, values))

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name (`{"llm_timeout_seconds": 20.0, ...}`)."""
        return {key: getattr(getattr(self, group), field) for key, (group, field) in _FLAT.items()}

    def replaced(self, **flat: Any) -> Settings:
        """A copy with the settings named by flat keyword changed (validated)."""
        groups: dict[str, Any] = {name: getattr(self, name) for name in _GROUPS}
        for name, changes in _route(flat).items():
            group = groups[name]
            valid = type(group).model_validate({**group.model_dump(), **changes})
            groups[name] = type(group).model_construct(
                group.model_fields_set | set(changes), **dict(valid)
            )
        return Settings(**groups)


_GROUPS: dict[str, type[SettingsGroup]] = {
    name: info.annotation
    for name, info in Settings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, SettingsGroup)
}


def flat_names() -> dict[str, tuple[str, str]]:
    """Flat keyword → (group, field): the documented variable in lower case without
    `SURGEFLOW_`."""
    return dict(_FLAT)


def _flat_name(variable: str) -> str:
    """`SURGEFLOW_LLM_TIMEOUT_SECONDS` → `llm_timeout_seconds`, `REDIS_URL` → `redis_url`."""
    return variable.lower().removeprefix("surgeflow_")


_FLAT: dict[str, tuple[str, str]] = {
    _flat_name(variables[0]): (group, field)
    for group, cls in _GROUPS.items()
    for field, variables in cls.variables().items()
}


def _route(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    routed: dict[str, dict[str, Any]] = {}
    unknown = sorted(set(flat) - set(_FLAT))
    if unknown:
        raise TypeError(f"unknown settings {', '.join(unknown)} (flat names: {sorted(_FLAT)})")
    for key, value in flat.items():
        group, field = _FLAT[key]
        routed.setdefault(group, {})[field] = value
    return routed


def _flat_loc(group: str, loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """An error's location named as before the grouping: a variable with several accepted names
    as the name that was set (`BYTEWAX_SNAPSHOT_INTERVAL`), any other setting by its flat name
    (`llm_prices.gpt-4o-mini.0`); a check of the whole group has no location, as before."""
    if not loc:
        return loc
    cls = _GROUPS[group]
    for field, variables in cls.variables().items():
        if loc[0] == field or loc[0] in variables:
            if (
                isinstance(cls.model_fields[field].validation_alias, AliasChoices)
                and loc[0] != field
            ):
                return loc
            return (_flat_name(variables[0]), *loc[1:])
    return loc


def _groups(title: str, values: dict[str, Any]) -> dict[str, Any]:
    options = {k: v for k, v in values.items() if k.startswith("_")}
    given = {k: v for k, v in values.items() if k in _GROUPS}
    routed = _route({k: v for k, v in values.items() if k not in options and k not in given})
    clash = sorted(set(given) & set(routed))
    if clash:
        raise TypeError(f"settings of group {', '.join(clash)} given both whole and by name")
    errors: list[InitErrorDetails] = []
    for name, cls in _GROUPS.items():
        if name in given:
            continue
        try:
            given[name] = cls(**options, **routed.get(name, {}))
        except ValidationError as exc:
            errors.extend(
                InitErrorDetails(
                    type=e["type"],
                    loc=_flat_loc(name, e["loc"]),
                    input=e["input"],
                    ctx=e.get("ctx", {}),
                )
                for e in exc.errors()
            )
    if errors:
        raise ValidationError.from_exception_data(title, errors)
    return given
