"""The project's wheel, built without network from a copy of its files; shared by the wheel test
(`tests/test_installed_wheel.py`) and the image test (`tests/deploy/test_image.py`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PROJECT_FILES = ("pyproject.toml", "README.md", "flows", "operators", "schemas", "data")


def check(command: list[str | Path], timeout: float = 120) -> str:
    """Runs `command`, fails the test with its output unless it exits 0; returns its stdout."""
    # Without PYTHONPATH: a source tree on it (with the `surgeflow.egg-info` an editable install
    # leaves there) would look to pip like the project already installed in the new venv.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(work: Path) -> Path:
    """`pip wheel --no-deps` of a copy of the project's files (the setuptools of the `test`
    extra, no build isolation, no index) into `work/wheels`; returns the wheel."""
    source = work / "source"
    source.mkdir()
    for name in PROJECT_FILES:
        origin = ROOT / name
        if origin.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(origin, source / name, ignore=ignore)
        else:
            shutil.copy2(origin, source / name)
    wheels = work / "wheels"
    pip = [sys.executable, "-m", "pip"]
    check([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, source])
    (wheel,) = wheels.glob("surgeflow-*.whl")
    return wheel
