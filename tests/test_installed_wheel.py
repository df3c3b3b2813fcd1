"""The wheel, installed into a fresh venv outside the source tree, runs both flows.

The wheel is built by `pip wheel` from a copy of the project's files (no network: the setuptools
of the `test` extra, no build isolation) and installed with `--no-deps` into a new venv. The
dependencies come from this interpreter through one `.pth` line naming its site-packages; a
`.pth` file inside a folder added that way is not run, so an editable install of the project
here stays inactive and `flows`, `operators`, `schemas` and `data` can only come from the wheel
(checked). Each flow then runs the way a user runs it, `python -m bytewax.run flows.<name>`, from
an empty folder with a clean environment: embedded defaults, no service.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.wheel import ROOT, build_wheel, check

pytestmark = pytest.mark.install

PACKAGES = ("flows", "operators", "schemas", "data")
MAIN_TOPIC = {"shipments": "shipments.decisions", "tickets": "tickets.responses"}


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    python: Path
    empty_dir: Path  # the working directory of every command: nothing to import there

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
        """`python -I args` of the venv, from the empty folder, in a clean environment."""
        clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.empty_dir)}
        return subprocess.run(
            [str(self.python), "-I", *args],
            cwd=self.empty_dir,
            env={**clean, "LANG": "C.UTF-8", **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
    pip = [sys.executable, "-m", "pip"]
    venv = work / "venv"
    check([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    install = ["install", "--no-deps", "--no-index", "--force-reinstall", "--quiet", wheel]
    check([*pip, "--python", python, *install])
    site = check([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    ours = dict.fromkeys(sysconfig.get_path(kind) for kind in ("purelib", "platlib"))
    (Path(site.strip()) / "surgeflow-test-dependencies.pth").write_text("\n".join(ours) + "\n")
    empty_dir = work / "elsewhere"
    empty_dir.mkdir()
    return Installed(wheel=wheel, venv=venv, python=python, empty_dir=empty_dir)


def test_the_wheel_ships_every_data_file(installed: Installed) -> None:
    data = ROOT / "data"
    expected = {
        f"data/{path.relative_to(data).as_posix()}"
        for path in data.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    with zipfile.ZipFile(installed.wheel) as wheel:
        shipped = {name for name in wheel.namelist() if name.startswith("data/")}
    assert "data/intents.json" in expected
    assert expected - shipped == set()


def test_the_project_is_imported_from_the_venv_not_the_source_tree(installed: Installed) -> None:
    code = (
        "import importlib, json\n"
        "from operators.runtime.resources import data_file\n"
        f"files = {{name: importlib.import_module(name).__file__ for name in {PACKAGES!r}}}\n"
        "files['intents.json'] = str(data_file('intents.json'))\n"
        "print(json.dumps(files))\n"
    )
    done = installed.run("-c", code)
    assert done.returncode == 0, done.stderr
    files = json.loads(done.stdout)
    venv = installed.venv.resolve()
    outside = {name: f for name, f in files.items() if not Path(f).resolve().is_relative_to(venv)}
    assert outside == {}
    assert not any(Path(f).resolve().is_relative_to(ROOT) for f in files.values())


def _audited(statement: str) -> str:
    """Code that runs `statement` and prints the data files it read (not the package's own
    `__init__`), the sockets it connected or bound, and the number of threads afterwards."""
    return f"""
import json, os, sys, threading
import data
shipped = os.path.dirname(data.__file__) + os.sep
seen = []
def audit(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(shipped):
        if not args[0].endswith((".py", ".pyc")):
            seen.append(args[0])
    elif event in ("socket.connect", "socket.bind"):
        seen.append(f"{{event}} {{args[1]}}")
sys.addaudithook(audit)
{statement}
print(json.dumps({{"seen": seen, "threads": threading.active_count()}}))
"""


def test_importing_the_flows_reads_no_data_and_opens_no_socket(installed: Installed) -> None:
    done = installed.run("-c", _audited("import flows.shipments, flows.tickets"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"seen": [], "threads": 1}
    # The flow is built (and its reference data read) when Bytewax asks for `flow`:
    built = installed.run("-c", _audited("from flows.shipments import flow"))
    assert built.returncode == 0, built.stderr
    assert any(path.endswith("carriers.csv") for path in json.loads(built.stdout)["seen"])


@pytest.mark.parametrize("name", ["shipments", "tickets"])
def test_a_flow_runs_from_the_installed_wheel(installed: Installed, name: str) -> None:
    done = installed.run("-m", "bytewax.run", f"flows.{name}", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    main = [r for r in records if r["topic"] == MAIN_TOPIC[name]]
    assert len(main) >= 50, done.stderr[-3000:]
    assert all(r["key"] for r in main)
