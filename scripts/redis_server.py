"""A throwaway `redis-server` on a free 127.0.0.1 port, for tests and local runs.

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)

`stop()` ends it (tests call it mid-run to prove the flow goes on without the cache). No
persistence, no protected-mode surprises: the server binds loopback only and writes nothing to
disk. The `redis-server` binary comes from Debian's package (`scripts/install_test_services.sh`).

CLI: `python scripts/redis_server.py run` starts one in the foreground and prints `REDIS_URL=...`.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class RedisServerError(RuntimeError):
    """`redis-server` is missing or did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One `redis-server` process on loopback; `url` is its `redis://` address."""

    def __init__(self, *, binary: str = "redis-server", maxmemory: str = "256mb") -> None:
        self._binary = binary
        self._maxmemory = maxmemory
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        path = shutil.which(self._binary)
        if path is None:
            raise RedisServerError(
                f"{self._binary} not found; install Debian's redis-server package "
                "(scripts/install_test_services.sh does)"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="surgeflow-redis-"))
        self.port = free_port()
        args = [path, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self._dir), "--maxmemory", self._maxmemory]
        args += ["--maxmemory-policy", "allkeys-lru"]
        with (self._dir / "redis.log").open("wb") as log:
            self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RedisServerError(f"redis-server exited: {self._log_tail()}")
            if _ping(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise RedisServerError(f"redis-server not ready after {timeout} s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and delete its folder; safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _log_tail(self) -> str:
        if self._dir is None or not (self._dir / "redis.log").exists():
            return ""
        return (self._dir / "redis.log").read_text(errors="replace")[-2000:]

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run"])
    parser.parse_args()
    with RedisServer() as server:
        print(f"REDIS_URL={server.url}", flush=True)
        try:
            while server.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
