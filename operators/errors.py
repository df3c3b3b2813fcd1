"""The root of the errors that must stop a flow.

No record can stop a flow: a step that fails on one record turns the failure into a dead letter
(`operators.runtime.guard`). Only what no record can cause stops it, loudly: output that cannot be
written and configuration that cannot work. Their exception classes derive from
`StopsTheFlow`, and the guards re-raise them instead of dead-lettering the record in hand.
"""

from __future__ import annotations


class StopsTheFlow(Exception):
    """An error the flow must stop on, whatever record it was processing."""


class ConfigurationError(RuntimeError, StopsTheFlow):
    """The settings ask for something this build cannot do; raised at flow build time."""
