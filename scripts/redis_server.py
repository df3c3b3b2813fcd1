"""A throwaway `redis-server` on a free 127.0.0.1 port, for tests and local runs.

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)

`stop()` ends it (tests call it mid-run to prove the flow goes on without the cache). No
persistence, no protected-mode surprises: the server binds loopback only and writes nothing to
disk. The `redis-server` binary comes from Debian's package (`scripts/install_test_services.sh`);
starting, waiting and stopping are `scripts/server_process.py`'s.

CLI: `python scripts/redis_server.py run` starts one in the foreground and prints `REDIS_URL=...`.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python scripts/redis_server.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.server_process import ServerProcess, free_port, run_in_foreground

__all__ = ["RedisServer", "RedisServerError", "free_port"]


class RedisServerError(RuntimeError):
    """`redis-server` is missing or did not start."""


class RedisServer(ServerProcess):
    """One `redis-server` process on loopback; `url` is its `redis://` address. `port` is a free
    one unless given (a test that brings Redis back at an address a client already holds)."""

    binary, package, error = "redis-server", "redis-server", RedisServerError

    def __init__(
        self, *, binary: str = "redis-server", maxmemory: str = "256mb", port: int | None = None
    ) -> None:
        super().__init__(binary=binary, port=port)
        self._maxmemory = maxmemory

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, path: str, folder: Path) -> list[str]:
        args = [path, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        args += ["--appendonly", "no", "--dir", str(folder), "--maxmemory", self._maxmemory]
        return [*args, "--maxmemory-policy", "allkeys-lru"]

    def ready(self) -> bool:
        """It answers PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run"])
    parser.parse_args()
    run_in_foreground(RedisServer(), "REDIS_URL")


if __name__ == "__main__":
    main()
