"""Versioned state: the layout of one step's recovery snapshots, and what a mismatch does.

Every keyed state this project hands Bytewax to snapshot (decision windows, ticket sessions, the
lanes of an async step) is a dict of plain values tagged with its layout's `"version"`. A
`VersionedState` describes one layout:

- `dump(body)` tags a snapshot with the current version;
- `load(snapshot, step=...)` returns it at the current version, running the registered
  `migrations` from older versions one version at a time (the migration registered under `v`
  turns a version-`v` snapshot into a version-`v + 1` one);
- a snapshot it cannot bring to the current version (a newer version, an older one with no
  migration, no version at all) raises `IncompatibleStateError` naming the step, the version
  found and the versions this build reads. It is a `StopsTheFlow` error: the flow stops rather
  than drop the state, since dropping it loses data (the scans of open windows, the calls in
  flight), and the store is left as it is for a build that reads it.
- A layout declared `disposable` (state whose loss costs only context, like a ticket session's
  conversation history) is the one exception: the same message is logged as a warning, the
  snapshot is dropped and `load` returns None, so the step starts that key afresh.

No Bytewax here, and no flow named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from operators.errors import IncompatibleStateError

logger = logging.getLogger(__name__)

State = dict[str, Any]
"""A snapshot: plain values (no classes of this project), with its layout's `"version"`."""

Migration = Callable[[State], State]
"""Turns a snapshot of one version into one of the next version."""


@dataclass(frozen=True)
class VersionedState:
    """One snapshot layout: its `name` in messages, current `version`, `migrations` from older
    versions (version → function to the next version; the mapping is read at each `load`, so a
    registry kept next to the layout may grow), and whether the state is `disposable`."""

    name: str
    version: int
    migrations: Mapping[int, Migration] = field(default_factory=dict)
    disposable: bool = False

    @property
    def reads(self) -> tuple[int, ...]:
        """The versions `load` restores: the current one and those migrations lead from."""
        versions = [self.version]
        while versions[0] - 1 in self.migrations:
            versions.insert(0, versions[0] - 1)
        return tuple(versions)

    def dump(self, body: Mapping[str, Any]) -> State:
        """`body` tagged with the current version (a new dict)."""
        return {"version": self.version, **body}

    def load(self, snapshot: Any, *, step: Optional[str] = None) -> Optional[State]:
        """`snapshot` at the current version, or None when there is none (a new key).

        Older versions are migrated. A snapshot that cannot be raises `IncompatibleStateError`
        naming `step`, or, for a disposable layout, is logged and dropped (None).
        """
        if snapshot is None:
            return None
        state = snapshot
        found = _version_of(state)
        while found is not None and found < self.version and found in self.migrations:
            state = self.migrations[found](state)
            migrated = _version_of(state)
            if migrated != found + 1:
                raise IncompatibleStateError(
                    self._where(step) + f"{self.name} snapshot migration from version {found} "
                    f"gave version {migrated!r}, not {found + 1}"
                )
            found = migrated
        if found == self.version and isinstance(state, dict):
            return state
        error = self.incompatible(
            f"snapshot has state version {_found(snapshot)!r}; this build reads "
            f"{_versions(self.reads)}",
            step=step,
        )
        if not self.disposable:
            raise error
        logger.warning("%s; this state is disposable: dropped, the key starts afresh", error)
        return None

    def incompatible(self, problem: str, *, step: Optional[str] = None) -> IncompatibleStateError:
        """The error refusing a snapshot of this layout for `problem` (a version, or a setting
        the state depends on), naming the step and how to resume."""
        return IncompatibleStateError(
            self._where(step) + f"{self.name} {problem}; resume from a recovery store written by "
            "a build that reads it, or start with a new store"
        )

    @staticmethod
    def _where(step: Optional[str]) -> str:
        return f"step {step}: " if step else ""


def _version_of(snapshot: Any) -> Optional[int]:
    """The snapshot's `"version"` when it is a dict tagged with an int, else None."""
    if not isinstance(snapshot, dict):
        return None
    version = snapshot.get("version")
    return version if type(version) is int else None


def _found(snapshot: Any) -> Any:
    """The snapshot's `"version"` as written (None when it is not a dict or has none)."""
    return snapshot.get("version") if isinstance(snapshot, dict) else None


def _versions(versions: tuple[int, ...]) -> str:
    if len(versions) == 1:
        return f"version {versions[0]}"
    return "versions " + ", ".join(str(v) for v in versions)
