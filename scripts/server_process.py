"""A server binary run as a child process on 127.0.0.1, for tests and local runs: what the
throwaway servers of `scripts/` share.

`ServerProcess` finds the binary on PATH (naming the Debian package that has it when it is
missing), gives it a free port and a temporary folder (its log, and whatever files the server
needs) and starts it, waits until it answers, and stops it (SIGTERM, then SIGKILL after a grace
period) at `stop()`, at the end of a `with` block, or at exit. A subclass says how to start its
server (`command`) and how to tell that it answers (`ready`):

    class EchoServer(ServerProcess):
        binary, package = "echo-server", "echo-server"

        def command(self, path: str, folder: Path) -> list[str]:
            return [path, "--port", str(self.port)]

        def ready(self) -> bool:
            return port_open(self.port)

Only the standard library is used.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Optional, TypeVar

Server = TypeVar("Server", bound="ServerProcess")


def free_ports(count: int = 1) -> list[int]:
    """Ports that the kernel reports free on 127.0.0.1 (all held open together, so distinct)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM `process`, and SIGKILL it if it has not ended within `grace` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ServerProcess(ABC):
    """One server process; subclasses set the class attributes and `command` / `ready`."""

    binary: ClassVar[str]
    """The executable, looked up on PATH."""
    package: ClassVar[str]
    """The Debian package that installs it (named when it is missing)."""
    error: ClassVar[type[RuntimeError]] = RuntimeError
    """Raised when the binary is missing or the server does not start."""
    start_timeout: ClassVar[float] = 10.0
    stop_grace: ClassVar[float] = 5.0
    poll_seconds: ClassVar[float] = 0.05

    def __init__(self, *, binary: Optional[str] = None, port: Optional[int] = None) -> None:
        self._binary = binary or self.binary
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._dir: Optional[Path] = None
        self.port = port or 0

    @abstractmethod
    def command(self, path: str, folder: Path) -> list[str]:
        """The command line that starts the server on `self.port` (the binary is at `path`);
        `folder` is its temporary folder, for any file it needs."""

    @abstractmethod
    def ready(self) -> bool:
        """Whether the started server answers."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The server's address, as its clients take it."""

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self: Server, timeout: Optional[float] = None) -> Server:
        """Start the server and wait until it is `ready`."""
        path = shutil.which(self._binary)
        if path is None:
            raise self.error(
                f"{self._binary} not found; install Debian's {self.package} package "
                "(scripts/install_test_services.sh does)"
            )
        self._dir = Path(tempfile.mkdtemp(prefix=f"surgeflow-{self.package}-"))
        self.port = self.port or free_port()
        command = self.command(path, self._dir)
        with self._log_path().open("wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)
        self._wait_ready(self.start_timeout if timeout is None else timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                tail = self.log_tail()
                self.stop()
                raise self.error(f"{self._binary} exited: {tail}")
            if self.ready():
                return
            time.sleep(self.poll_seconds)
        self.stop()
        raise self.error(f"{self._binary} not ready after {timeout} s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and delete its folder; safe to call twice."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None:
            terminate(process, self.stop_grace)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _log_path(self) -> Path:
        assert self._dir is not None
        return self._dir / f"{self._binary.rsplit('/', 1)[-1]}.log"

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines of the server's output (while its folder exists)."""
        if self._dir is None or not self._log_path().exists():
            return ""
        return "\n".join(self._log_path().read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self: Server) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_in_foreground(server: ServerProcess, variable: str) -> None:
    """The `run` command of a server script: start `server`, print `<variable>=<its url>`, and
    keep it until it exits or Ctrl-C."""
    with server:
        try:  # a Ctrl-C right after the line is printed still stops the server cleanly
            print(f"{variable}={server.url}", flush=True)
            while server.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
