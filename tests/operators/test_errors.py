"""The one error tree: every exception class of the project derives from `SurgeflowError`, and
exactly those that must stop a flow derive from `StopsTheFlow` (the guards let only them and
`MemoryError` through)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import flows
import operators
import schemas
from operators.errors import IncompatibleStateError, StopsTheFlow, SurgeflowError
from operators.runtime.guard import PASS_THROUGH, StepFailure, guarded

PACKAGES = (flows, operators, schemas)


def _modules() -> list[ModuleType]:
    found = []
    for package in PACKAGES:
        found.append(package)
        prefix = package.__name__ + "."
        for info in pkgutil.walk_packages(package.__path__, prefix):
            found.append(importlib.import_module(info.name))
    return found


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in the project's packages, by qualified name."""
    classes: dict[str, type[BaseException]] = {}
    for module in _modules():
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                classes[f"{value.__module__}.{value.__qualname__}"] = value
    return classes


CLASSES = _exception_classes()


def test_the_walk_finds_the_exception_classes_of_every_layer() -> None:
    assert len(CLASSES) >= 20
    names = {cls.__name__ for cls in CLASSES.values()}
    assert {"ReferenceDataError", "LLMTimeout", "KafkaDeliveryError", "TopicNotFound"} <= names
    assert {"ConfigurationError", "PreflightError", "RecoveryConfigurationError"} <= names


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_exception_class_of_the_project_derives_from_the_root(name: str) -> None:
    assert issubclass(CLASSES[name], SurgeflowError)


def test_one_root_and_one_incompatible_state_error() -> None:
    project = set(CLASSES.values())
    roots = [cls for cls in project if not project.intersection(cls.__bases__)]
    assert roots == [SurgeflowError]
    incompatible = [c for c in CLASSES.values() if c.__name__ == "IncompatibleStateError"]
    assert incompatible == [IncompatibleStateError]


def test_exactly_the_errors_that_must_stop_a_flow_are_marked() -> None:
    stopping = {cls.__name__ for cls in CLASSES.values() if issubclass(cls, StopsTheFlow)}
    assert stopping == {
        "StopsTheFlow",
        "IncompatibleStateError",
        "KafkaDeliveryError",
        "ConfigurationError",
        "PreflightError",
        "RecoveryConfigurationError",
    }
    assert set(PASS_THROUGH) == {StopsTheFlow, MemoryError}


def test_each_class_keeps_the_python_base_callers_may_catch() -> None:
    by_name = {cls.__name__: cls for cls in CLASSES.values()}
    for name in ("ReferenceDataError", "TemplateDataError", "IncompatibleStateError"):
        assert issubclass(by_name[name], ValueError), name
    for name in ("BatcherClosed", "BatchResultMismatch", "KafkaNotConfigured", "TopicNotFound"):
        assert issubclass(by_name[name], RuntimeError), name
    for name in ("KafkaDeliveryError", "ConfigurationError"):
        assert issubclass(by_name[name], RuntimeError), name


def test_a_guard_dead_letters_a_project_error_but_lets_a_stopping_one_through() -> None:
    by_name = {cls.__name__: cls for cls in CLASSES.values()}

    def raising(error: BaseException) -> None:
        raise error

    failure = guarded("f.step", raising)(by_name["ReferenceDataError"]("bad carriers.csv"))
    assert isinstance(failure, StepFailure) and failure.error_type == "ReferenceDataError"
    with pytest.raises(IncompatibleStateError):
        guarded("f.step", raising)(IncompatibleStateError("step f.step: state version 9"))
