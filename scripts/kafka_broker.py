"""A real single-node Apache Kafka 4.x broker (KRaft, combined broker+controller) for tests.

No Docker and no Apache download site are needed: the broker's classpath comes from Maven
Central through the one-dependency project ``scripts/kafka/pom.xml``. ``fetch_jars`` copies its
runtime dependencies into ``.cache/kafka/libs`` (only when missing or when the POM changed), and
``KafkaBroker`` formats a fresh KRaft log dir in a temp dir and runs ``java kafka.Kafka`` on two
free 127.0.0.1 ports until ``stop()`` (also registered with ``atexit``; a default SIGTERM is
turned into KeyboardInterrupt so that atexit runs then too; only SIGKILL orphans the broker).

    with KafkaBroker() as broker:
        use(broker.bootstrap_servers)  # "127.0.0.1:NNNN"

Command line (Java 17+ and Maven needed)::

    python scripts/kafka_broker.py fetch            # download the jars, print the libs dir
    python scripts/kafka_broker.py start            # start detached, print KAFKA_BOOTSTRAP_SERVERS
    python scripts/kafka_broker.py stop             # stop the broker that `start` left running
    python scripts/kafka_broker.py run              # run in the foreground until Ctrl-C

Only the standard library and confluent_kafka are used.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as `python scripts/kafka_broker.py`
    sys.path.insert(0, str(REPO_ROOT))

from scripts.server_process import free_ports, terminate  # noqa: E402

__all__ = ["BrokerError", "KafkaBroker", "broker_properties", "free_ports", "new_cluster_id"]

POM = REPO_ROOT / "scripts" / "kafka" / "pom.xml"
DEFAULT_CACHE = REPO_ROOT / ".cache" / "kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
MAIN_CLASS = "kafka.Kafka"
STOP_GRACE_SECONDS = 20.0
# slf4j-simple (see the POM) writes to stderr; WARN keeps the log small, and the one INFO line
# "[KafkaRaftServer nodeId=1] Kafka Server started" marks the end of start-up.
LOGGING_FLAGS = [
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
    "-Dorg.slf4j.simpleLogger.log.kafka.server.KafkaRaftServer=info",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
]
FAST_JVM_FLAGS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]


class BrokerError(RuntimeError):
    """The jars could not be fetched, or the broker did not start or stop."""


# --- jars -------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _jars_current(libs: Path, stamp: Path, digest: str) -> bool:
    return stamp.is_file() and stamp.read_text().strip() == digest and any(libs.glob("kafka_*.jar"))


def fetch_jars(cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Copy the broker's runtime jars into ``<cache_dir>/libs`` unless current; return that dir."""
    cache_dir = Path(cache_dir)
    libs, stamp = cache_dir / "libs", cache_dir / "pom.sha256"
    digest = _sha256(POM)
    if _jars_current(libs, stamp, digest):
        return libs
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers: one download, the others wait
        if not _jars_current(libs, stamp, digest):
            shutil.rmtree(libs, ignore_errors=True)  # no stale jars of an older version
            _run_maven(libs)
            stamp.write_text(digest + "\n")
    return libs


def _run_maven(libs: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("mvn (Apache Maven) is not on PATH; it fetches the Kafka jars")
    cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"]
    cmd += ["-DincludeScope=runtime", f"-DoutputDirectory={libs}"]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BrokerError(f"mvn failed ({done.returncode}):\n{_tail(done.stdout + done.stderr)}")


# --- configuration ----------------------------------------------------------------------------


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (22 characters)."""
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
        if not cid.startswith("-"):  # a leading dash would read as an option (as Kafka's Uuid)
            return cid


def broker_properties(port: int, controller_port: int, log_dir: Path | str) -> str:
    """server.properties of a single combined broker+controller node on 127.0.0.1."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
    }
    return "".join(f"{key}={value}\n" for key, value in props.items())


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home, "bin", "java")) if home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise BrokerError("java (17 or newer) is not on PATH and JAVA_HOME is not set")
    return java


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _file_tail(path: Path) -> str:
    try:
        return _tail(path.read_text(errors="replace"))
    except OSError:
        return "(no log)"


def _interrupt_on_sigterm() -> None:
    """Make a default (fatal) SIGTERM act like Ctrl-C, so atexit still stops the broker.

    Without it `timeout pytest ...` or a cancelled CI job orphans the java process. It raises
    KeyboardInterrupt, not SystemExit, because pytest records SystemExit as one failed test and
    carries on. SIGKILL cannot be caught; only the main thread may set handlers; a handler
    already set is kept.
    """
    is_main = threading.current_thread() is threading.main_thread()
    if is_main and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)


# --- the broker -------------------------------------------------------------------------------


class KafkaBroker:
    """One broker process. ``log_dir`` keeps its stdout/stderr log after stop (default: temp)."""

    def __init__(
        self, *, cache_dir: Path = DEFAULT_CACHE, log_dir: Path | None = None, heap: str = "512m"
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.heap = heap
        self.tmp_dir: Path | None = None
        self.log_path: Path | None = None
        self.format_seconds = 0.0
        self.started_in = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._launched_at = 0.0

    @property
    def bootstrap_servers(self) -> str:
        if not self._port:
            raise BrokerError("the broker is not started")
        return f"127.0.0.1:{self._port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise BrokerError("the broker is not started")
        return self._proc.pid

    def start(self, timeout: float = 120.0) -> KafkaBroker:
        """Fetch the jars, format storage, launch java and wait until the broker answers."""
        if self._proc is not None:
            raise BrokerError("the broker is already started")
        libs = fetch_jars(self.cache_dir)
        self._port, controller_port = free_ports(2)
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="surgeflow-kafka-"))
        props = self.tmp_dir / "server.properties"
        props.write_text(broker_properties(self._port, controller_port, self.tmp_dir / "data"))
        atexit.register(self.stop)
        _interrupt_on_sigterm()
        try:
            self._format(libs, props)
            self._launch(libs, props)
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _classpath_cmd(self, libs: Path, xmx: str) -> list[str]:
        return [_java(), "-Xms256m", f"-Xmx{xmx}", *FAST_JVM_FLAGS, "-cp", f"{libs}/*"]

    def _format(self, libs: Path, props: Path) -> None:
        cmd = [*self._classpath_cmd(libs, "256m"), STORAGE_TOOL, "format"]
        cmd += ["-t", new_cluster_id(), "-c", str(props), "--standalone"]
        began = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        self.format_seconds = time.monotonic() - began
        if done.returncode != 0:
            out = _tail(done.stdout + done.stderr)
            raise BrokerError(f"{STORAGE_TOOL} format failed ({done.returncode}):\n{out}")

    def _launch(self, libs: Path, props: Path) -> None:
        assert self.tmp_dir is not None
        log_dir = self.log_dir or self.tmp_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"kafka-{self._port}.log"
        cmd = [*self._classpath_cmd(libs, self.heap), *LOGGING_FLAGS, MAIN_CLASS, str(props)]
        self._launched_at = time.monotonic()
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # no terminal Ctrl-C; lets `start` outlive its shell
            )

    def _wait_ready(self, timeout: float) -> None:
        from confluent_kafka import KafkaException  # lazy: `fetch` runs on any python3
        from confluent_kafka.admin import AdminClient

        # log_level 0 silences librdkafka's "connection refused" lines while java boots.
        admin = AdminClient(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 250,
                "log_level": 0,
            }
        )
        deadline = self._launched_at + timeout
        while time.monotonic() < deadline:
            if not self.running():
                assert self._proc is not None
                raise BrokerError(self._failure(f"java exited with {self._proc.returncode}"))
            with contextlib.suppress(KafkaException):
                if admin.list_topics(timeout=1).brokers:
                    self.started_in = time.monotonic() - self._launched_at
                    return
            time.sleep(0.05)
        raise BrokerError(self._failure(f"the broker was not ready within {timeout:.0f} s"))

    def _failure(self, what: str) -> str:
        log = _file_tail(self.log_path) if self.log_path else "(no log)"
        kept = "" if self.log_dir else " (deleted on stop; pass log_dir= to keep it)"
        return f"Kafka broker failed: {what}; log {self.log_path}{kept}:\n{log}"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s; delete the temp dir. Safe to call twice."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc, STOP_GRACE_SECONDS)
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            self.tmp_dir = None

    def stop_process(self) -> None:
        """End java as `stop` does but keep the storage and the ports: an outage that `restart`
        ends (clients see "Connection refused" meanwhile)."""
        if self._proc is not None:
            terminate(self._proc, STOP_GRACE_SECONDS)

    def restart(self, timeout: float = 120.0) -> None:
        """Launch java again on the same port and storage after `stop_process`; wait until ready."""
        if self.running():
            raise BrokerError("the broker is running; stop_process() it first")
        if self.tmp_dir is None:
            raise BrokerError("the broker was never started or its storage is gone")
        self._launch(fetch_jars(self.cache_dir), self.tmp_dir / "server.properties")
        self._wait_ready(timeout)

    def running(self) -> bool:
        """Whether the java process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def detach(self) -> dict[str, object]:
        """Leave the broker running after this Python exits; return what ``stop_detached`` needs."""
        atexit.unregister(self.stop)
        state = {"pid": self.pid, "bootstrap_servers": self.bootstrap_servers}
        state |= {"tmp_dir": str(self.tmp_dir), "log": str(self.log_path)}
        self._proc = None  # a later stop() must not kill it; the process is now on its own
        self.tmp_dir = None
        return state

    def __enter__(self) -> KafkaBroker:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- detached brokers (CLI start/stop) --------------------------------------------------------


@contextlib.contextmanager
def given_or_started() -> Iterator[str]:
    """The bootstrap servers of `KAFKA_BOOTSTRAP_SERVERS`, or of a broker started here for the
    duration (the benchmarks' way to find a broker)."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    with KafkaBroker() as started:
        yield started.bootstrap_servers


def _is_broker(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    return not cmdline.exists() or MAIN_CLASS.encode() in cmdline.read_bytes()


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_broker(pid):
            return True
        time.sleep(0.1)
    return False


def stop_detached(state: dict[str, object]) -> None:
    """Stop a broker that ``detach()`` left running and delete its temp dir."""
    pid = int(state["pid"])  # type: ignore[call-overload]
    if _is_broker(pid):
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, STOP_GRACE_SECONDS):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)
    shutil.rmtree(str(state["tmp_dir"]), ignore_errors=True)


# --- command line -----------------------------------------------------------------------------


def _print_started(broker: KafkaBroker) -> None:
    print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
    took = f"format {broker.format_seconds:.1f} s, start {broker.started_in:.1f} s"
    print(f"Kafka broker pid {broker.pid} ready ({took}); log {broker.log_path}", file=sys.stderr)


def _cmd_start(args: argparse.Namespace) -> None:
    state_file: Path = args.state
    if state_file.exists() and _is_broker(int(json.loads(state_file.read_text())["pid"])):
        raise BrokerError(f"a broker from {state_file} is still running; stop it first")
    broker = KafkaBroker(cache_dir=args.cache).start()
    _print_started(broker)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(broker.detach(), indent=2) + "\n")


def _cmd_stop(args: argparse.Namespace) -> None:
    if not args.state.exists():
        print(f"no broker state in {args.state}; nothing to stop", file=sys.stderr)
        return
    state = json.loads(args.state.read_text())
    stop_detached(state)
    args.state.unlink()
    print(f"Kafka broker pid {state['pid']} stopped", file=sys.stderr)


def _cmd_run(args: argparse.Namespace) -> None:
    with KafkaBroker(cache_dir=args.cache) as broker:
        _print_started(broker)
        try:
            while broker.running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="jar cache dir")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the broker jars and print their dir")
    for name, what in [("start", "start detached"), ("stop", "stop the detached broker")]:
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("--state", type=Path, default=DEFAULT_CACHE / "broker.json")
    sub.add_parser("run", help="run in the foreground until Ctrl-C")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch_jars(args.cache))
        else:
            {"start": _cmd_start, "stop": _cmd_stop, "run": _cmd_run}[args.command](args)
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
