"""The container image, proven without a container engine.

`hadolint` lints the Dockerfile, and its final stage is read: pinned base, uid 65532, the
entrypoint and default command, the install script bound in, no build tool. Then the install
script the final stage runs (`scripts/image/install.sh`) runs here, unchanged, into a fresh venv
outside the source tree, from a folder of wheels like the build stage's `/wheels`: the project's
wheel (`tests/support/wheel.py`, as the wheel test builds it) and its dependencies' wheels
(`pip download`, at the versions installed here, so pip's cache serves them). From that venv:

- the image's command (ENTRYPOINT + CMD, the image's ENV) runs each flow from an empty folder
  on embedded defaults;
- the chart's way (`waxctl dataflow deploy flows/<name>.py ... --recovery`): the flow file alone
  in `var/bytewax/`, the recovery init step, then `sh -c "sh ./entrypoint.sh"` in the image's
  WORKDIR with the chart's environment (pod name, statefulset name, a hostfile of one 127.0.0.1
  line, recovery variables).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir

from operators.config.settings import Settings
from operators.runtime.shutdown import HARD_STOP_MARGIN_SECONDS
from tests.flows.kafka_runs import kafka_settings, with_topics
from tests.flows.recovery_runs import settings_env
from tests.support.wheel import ROOT, build_wheel, check

pytestmark = pytest.mark.install

MAIN_TOPIC = {"shipments": "shipments.decisions", "tickets": "tickets.responses"}
UID = "65532"
STOP_BOUND_SECONDS = Settings().recovery.shutdown_grace_seconds + HARD_STOP_MARGIN_SECONDS


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def one(self, keyword: str) -> str:
        (args,) = self.all(keyword)
        return args


def dockerfile_stages(path: Path = ROOT / "Dockerfile") -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages, each a list of (KEYWORD, arguments), with the
    continuation lines joined and the comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base = rest.split()[0]
            for name, value in args.items():
                base = base.replace(f"${{{name}}}", value)
            stages.append(Stage(base=base))
        elif not stages and keyword == "ARG":
            name, _, value = rest.partition("=")
            args[name] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def image_env(final: Stage) -> dict[str, str]:
    """The final stage's ENV (`KEY=VALUE` pairs), `$PATH` expanded to this machine's PATH."""
    env: dict[str, str] = {}
    for args in final.all("ENV"):
        for pair in args.split():
            key, _, value = pair.partition("=")
            env[key] = value.replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def test_hadolint_passes_the_dockerfile() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run(
        [str(hadolint), "--no-color", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_final_stage_runs_the_flows_as_uid_65532_without_build_tools() -> None:
    args, (build, final) = dockerfile_stages()
    assert build.base == final.base == args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", final.base), final.base
    assert "pip wheel --wheel-dir /wheels" in build.one("RUN")
    assert final.one("USER") == f"{UID}:{UID}"
    assert json.loads(final.one("ENTRYPOINT")) == ["python", "-m", "bytewax.run"]
    assert json.loads(final.one("CMD")) == ["flows.shipments"]
    assert final.one("WORKDIR") == "/bytewax"
    shell, run = final.all("RUN")
    assert shell == "ln -sf bash /bin/sh"  # see test_sigterm_from_kubernetes_reaches_the_flow
    assert "source=scripts/image/install.sh,target=/tmp/install.sh" in run
    assert "from=build,source=/wheels,target=/wheels" in run
    assert "sh /tmp/install.sh /wheels /venv" in run
    assert not re.search(r"apt-get|apk |gcc|build-essential|maturin", run)
    assert image_env(final)["PATH"].startswith("/venv/bin:")
    # The chart runs `sh ./entrypoint.sh` and `sh ./entrypoint-recovery.sh` in the WORKDIR.
    copied = final.one("COPY").split()
    assert copied == ["scripts/image/entrypoint.sh", "scripts/image/entrypoint-recovery.sh", "./"]


def test_dockerignore_keeps_what_the_build_copies_and_nothing_else() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "**"
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    _, stages = dockerfile_stages()
    sources = {"scripts/image/install.sh"}
    for stage in stages:
        for args in stage.all("COPY"):
            if "--from" not in args:
                sources.update(args.split()[:-1])
    for source in sources:
        assert (ROOT / source).exists(), source
        assert any(source == k or source.startswith(k + "/") for k in kept), source
    assert not kept & {".venv", ".cache", ".git", "tests", "out"}


@dataclass(frozen=True)
class Image:
    venv: Path
    work: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The image's ENV with /venv and /var/... mapped into this test's folders."""
        _, (_, final) = dockerfile_stages()
        env = {"HOME": str(self.work / "home"), "LANG": "C.UTF-8"}
        for key, value in image_env(final).items():
            value = value.replace("/venv/", f"{self.venv}/").replace("/var/", f"{self.work}/var/")
            env[key] = value
        return {**env, **extra}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    work = tmp_path_factory.mktemp("image")
    wheel = build_wheel(work)
    wheels = wheel.parent
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    frozen = check([*pip, "freeze", "--exclude-editable"]).splitlines()
    constraints = work / "constraints.txt"
    constraints.write_text("\n".join(line for line in frozen if "==" in line) + "\n")
    download = ["download", "--quiet", "--only-binary", ":all:", "-d", wheels, "-c", constraints]
    check([*pip, *download, wheel], timeout=300)
    venv = work / "venv"
    install = ROOT / "scripts" / "image" / "install.sh"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHON": sys.executable}
    done = subprocess.run(
        ["sh", str(install), str(wheels), str(venv)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for folder in ("home", "var/bytewax", "var/bytewax-api-cache", "var/recovery", "empty"):
        (work / folder).mkdir(parents=True)
    return Image(venv=venv, work=work)


def test_the_install_script_puts_the_project_and_its_data_in_the_venv(image: Image) -> None:
    code = (
        "import json, importlib\n"
        "from operators.runtime.resources import data_file\n"
        "names = ('flows', 'operators', 'schemas', 'data', 'bytewax', 'polars')\n"
        # bytewax is a namespace package: no __file__, one folder in __path__
        "files = {n: list(importlib.import_module(n).__path__)[0] for n in names}\n"
        "files['carriers.csv'] = str(data_file('carriers.csv'))\n"
        "print(json.dumps(files))\n"
    )
    done = subprocess.run(
        ["python", "-c", code],
        cwd=image.work / "empty",
        env=image.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    files = {name: Path(f).resolve() for name, f in json.loads(done.stdout).items()}
    assert {n: f for n, f in files.items() if not f.is_relative_to(image.venv.resolve())} == {}
    assert not (image.venv / "bin" / "pip").exists()


def _records(stdout: str, name: str) -> list[dict[str, object]]:
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [r for r in records if r["topic"] == MAIN_TOPIC[name]]


@pytest.mark.parametrize("name", ["shipments", "tickets"])
def test_the_image_command_runs_each_flow(image: Image, name: str) -> None:
    _, (_, final) = dockerfile_stages()
    command = json.loads(final.one("ENTRYPOINT"))
    command += json.loads(final.one("CMD")) if name == "shipments" else [f"flows.{name}"]
    done = subprocess.run(
        command,
        cwd=image.work / "empty",
        env=image.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    main = _records(done.stdout, name)
    assert len(main) >= 50, done.stderr[-3000:]
    assert all(r["key"] for r in main)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("name", ["shipments", "tickets"])
def test_waxctl_deploy_runs_the_flow_file_alone(image: Image, name: str) -> None:
    """`waxctl df deploy flows/<name>.py --name <name> -p 1 -w 1 --recovery`, as its chart runs
    it: the file alone in the working directory, the image's entrypoint scripts."""
    pod = image.work / f"pod-{name}"
    workdir = pod / "bytewax"  # the image's WORKDIR, holding the COPY'd entrypoint scripts
    flow_dir, etc, recovery = pod / "var" / "bytewax", pod / "etc" / "bytewax", pod / "recovery"
    for folder in (workdir, flow_dir, etc, recovery):
        folder.mkdir(parents=True)
    for script in ("entrypoint.sh", "entrypoint-recovery.sh"):
        shutil.copy2(ROOT / "scripts" / "image" / script, workdir / script)
    shutil.copy2(ROOT / "flows" / f"{name}.py", flow_dir / f"{name}.py")
    (etc / "hostfile.txt").write_text(f"127.0.0.1:{_free_port()}\n")
    recovery_env = {
        "BYTEWAX_RECOVERY_DIRECTORY": str(recovery),
        "BYTEWAX_SNAPSHOT_INTERVAL": "30",
        "BYTEWAX_RECOVERY_BACKUP_INTERVAL": "30",  # the chart's defaults
    }

    def chart(script: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", f"sh ./{script}"],
            cwd=workdir,
            env=image.env(**recovery_env, **env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    for _ in range(2):  # the init step creates the store once and keeps it on a restart
        init = chart("entrypoint-recovery.sh", BYTEWAX_RECOVERY_PARTS="1")
        assert init.returncode == 0, init.stderr
    assert sorted(p.name for p in recovery.iterdir()) == ["part-0.sqlite3"]
    assert "recovery store kept" in init.stderr

    done = chart(
        "entrypoint.sh",
        RUST_LOG="librdkafka=debug,rdkafka::client=debug",
        RUST_BACKTRACE="full",
        PYTHONUNBUFFERED="1",
        BYTEWAX_PYTHON_FILE_PATH=str(flow_dir / f"{name}.py"),
        BYTEWAX_WORKDIR=str(flow_dir),
        BYTEWAX_WORKERS_PER_PROCESS="1",
        BYTEWAX_POD_NAME=f"{name}-0",
        BYTEWAX_REPLICAS="1",
        BYTEWAX_KEEP_CONTAINER_ALIVE="false",
        BYTEWAX_HOSTFILE_PATH=str(etc / "hostfile.txt"),
        BYTEWAX_STATEFULSET_NAME=name,
        BYTEWAX_DATAFLOW_API_PORT=str(_free_port()),
        BYTEWAX_DATAFLOW_API_CACHE_PATH=str(pod / "api-cache"),
        BYTEWAX_OTLP_URL="http://shipments-opentelemetry-collector:4317",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    main = _records(done.stdout, name)
    assert len(main) >= 50, done.stderr[-3000:]
    assert all(r["key"] for r in main)
    # Only the flow file was there to import beside the venv; the state went to the store.
    assert sorted(p.name for p in flow_dir.iterdir() if p.name != "__pycache__") == [f"{name}.py"]
    with contextlib.closing(sqlite3.connect(recovery / "part-0.sqlite3")) as store:
        ((snapshots,),) = store.execute("SELECT count(*) FROM snaps").fetchall()
    assert snapshots > 0


def test_keep_alive_holds_the_container_after_the_flow_ends_and_keeps_its_status(
    image: Image,
) -> None:
    """`BYTEWAX_KEEP_CONTAINER_ALIVE=true` (`waxctl --keep-alive`): the script outlives the flow
    (here one whose file is missing) and exits with the flow's status on SIGTERM."""
    workdir = image.work / "keep-alive"
    workdir.mkdir()
    shutil.copy2(ROOT / "scripts" / "image" / "entrypoint.sh", workdir / "entrypoint.sh")
    env = image.env(
        BYTEWAX_KEEP_CONTAINER_ALIVE="true",
        BYTEWAX_WORKDIR=str(workdir),
        BYTEWAX_PYTHON_FILE_PATH=str(workdir / "missing.py"),
    )
    process = subprocess.Popen(
        ["sh", "./entrypoint.sh"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "kept alive" in line:
                break
        assert "process ended with status 1" in lines[-1], "".join(lines)
        assert process.poll() is None
        listing = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        deadline = time.monotonic() + 5
        while not (children := listing.read_text().split()):  # the sleep it waits on
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 1
        deadline = time.monotonic() + 5
        while any(Path(f"/proc/{child}").exists() for child in children):
            assert time.monotonic() < deadline, f"left running: {children}"
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_from_kubernetes_reaches_the_flow(image: Image) -> None:
    """The chart's container command, `sh -c "sh ./entrypoint.sh"`, is PID 1, and a signal
    without a handler is dropped for PID 1. With the image's `/bin/sh` (bash, a `sh` first on
    PATH here) both shells exec, so the flow's Python is that process and gets the SIGTERM."""
    workdir = image.work / "signals"
    shell_bin = workdir / "bin"
    shell_bin.mkdir(parents=True)
    bash = shutil.which("bash")
    assert bash is not None
    (shell_bin / "sh").symlink_to(bash)
    shutil.copy2(ROOT / "scripts" / "image" / "entrypoint.sh", workdir / "entrypoint.sh")
    flow = workdir / "sleeper.py"
    flow.write_text("import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n")
    env = image.env(BYTEWAX_WORKDIR=str(workdir), BYTEWAX_PYTHON_FILE_PATH=str(flow))
    env["PATH"] = f"{shell_bin}:{env['PATH']}"
    process = subprocess.Popen(
        [str(shell_bin / "sh"), "-c", "sh ./entrypoint.sh"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert int(process.stdout.readline()) == process.pid
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler for `signum` (SigCgt in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


@pytest.mark.kafka
def test_sigterm_to_the_charts_command_stops_a_tailing_flow_gracefully(
    image: Image, kafka_bootstrap: str
) -> None:
    """The shipments file, run by the chart's command under the image's shell, tailing topics of
    its own on the real broker with a recovery store: SIGTERM to the container's PID 1 gives the
    graceful stop (exit 0, the stop line), not a kill."""
    settings = with_topics(kafka_settings(kafka_bootstrap, kafka_tail=True), "shipments")
    pod = image.work / "graceful"
    workdir, flow_dir, shell_bin, recovery = (
        pod / "bytewax", pod / "var" / "bytewax", pod / "bin", pod / "recovery",
    )  # fmt: skip
    for folder in (workdir, flow_dir, shell_bin, recovery):
        folder.mkdir(parents=True)
    bash = shutil.which("bash")
    assert bash is not None
    (shell_bin / "sh").symlink_to(bash)
    shutil.copy2(ROOT / "scripts" / "image" / "entrypoint.sh", workdir / "entrypoint.sh")
    shutil.copy2(ROOT / "flows" / "shipments.py", flow_dir / "shipments.py")
    (pod / "hostfile.txt").write_text(f"127.0.0.1:{_free_port()}\n")
    init_db_dir(recovery, 1)
    env = image.env(
        **settings_env(settings),
        BYTEWAX_PYTHON_FILE_PATH=str(flow_dir / "shipments.py"),
        BYTEWAX_WORKDIR=str(flow_dir),
        BYTEWAX_POD_NAME="shipments-0",
        BYTEWAX_STATEFULSET_NAME="shipments",
        BYTEWAX_HOSTFILE_PATH=str(pod / "hostfile.txt"),
        BYTEWAX_RECOVERY_DIRECTORY=str(recovery),
        BYTEWAX_SNAPSHOT_INTERVAL="30",
        BYTEWAX_RECOVERY_BACKUP_INTERVAL="30",
    )
    env["PATH"] = f"{shell_bin}:{env['PATH']}"
    stderr = pod / "stderr.txt"
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            [str(shell_bin / "sh"), "-c", "sh ./entrypoint.sh"],
            cwd=workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,  # its own group: nothing left running if the test fails
        )
    try:
        deadline = time.monotonic() + 60
        while not _catches(process.pid, signal.SIGTERM):  # the flow's stop handler is in place
            assert process.poll() is None, stderr.read_text()[-3000:]
            assert time.monotonic() < deadline, stderr.read_text()[-3000:]
            time.sleep(0.1)
        time.sleep(1)  # tailing the empty topic
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_BOUND_SECONDS) == 0, stderr.read_text()[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert stderr.read_text().count("stopped on SIGTERM") == 1, stderr.read_text()[-3000:]
