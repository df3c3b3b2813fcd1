"""The one error tree of the project, and the errors that must stop a flow.

Every exception class this project defines derives from `SurgeflowError`, so a caller can catch
the project's own failures apart from Python's and its libraries' (`except SurgeflowError`). Each
class keeps its Python base too (`ValueError`, `RuntimeError`), so code catching those still does.

No record can stop a flow: a step that fails on one record turns the failure into a dead letter
(`operators.runtime.guard`). Only what no record can cause stops it, loudly: output that cannot be
written, configuration that cannot work, and recovery state this build cannot read. Their
exception classes derive from `StopsTheFlow`, and the guards re-raise them instead of
dead-lettering the record in hand.

This module imports nothing of the project.
"""

from __future__ import annotations


class SurgeflowError(Exception):
    """The root of every exception class of this project."""


class StopsTheFlow(SurgeflowError):
    """An error the flow must stop on, whatever record it was processing."""


class IncompatibleStateError(StopsTheFlow, ValueError):
    """A recovery snapshot this build cannot restore: a state version it does not read, or one
    written with a setting the state depends on (a window length) that has changed.

    The message names the step, the version found and the versions this build reads
    (`operators.runtime.state.VersionedState`). The flow stops rather than drop the state: the
    store is left as it is, so a build that reads it can resume from it.
    """


class ConfigurationError(RuntimeError, StopsTheFlow):
    """The settings ask for something this build cannot do; raised at flow build time."""
