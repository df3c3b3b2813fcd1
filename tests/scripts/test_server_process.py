"""`scripts/server_process.py` through its two servers: a real `redis-server` and `prometheus`."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.prometheus_server import PrometheusServer
from scripts.redis_server import RedisServer, RedisServerError
from scripts.server_process import free_ports

ROOT = Path(__file__).resolve().parents[2]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_free_ports_are_distinct_and_unused() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5 and not any(answers(p) for p in ports)


def test_a_server_starts_answers_and_leaves_nothing_behind_when_stopped() -> None:
    server = RedisServer().start()
    folder = server._dir
    assert server.running and server.ready() and answers(server.port)
    assert folder is not None and folder.is_dir()
    server.stop()
    server.stop()  # twice is fine
    assert not server.running and not answers(server.port) and not folder.exists()


def test_a_server_that_exits_at_start_raises_with_its_log_and_cleans_up() -> None:
    server = RedisServer(maxmemory="plenty")
    with pytest.raises(RedisServerError, match=r"(?s)redis-server exited: .*maxmemory .plenty"):
        server.start()
    assert server._dir is None and not server.running


def test_a_missing_binary_names_the_package() -> None:
    with pytest.raises(RedisServerError, match="install Debian's redis-server package"):
        RedisServer(binary="no-such-redis-server").start()


def test_prometheus_is_ready_and_answers_queries() -> None:
    with PrometheusServer(["127.0.0.1:9"]) as server:
        assert server.query("vector(1)")[0]["value"][1] == "1"


@pytest.mark.parametrize("script", ["redis_server.py", "prometheus_server.py"])
def test_the_run_command_prints_the_url_and_stops_at_ctrl_c(script: str) -> None:
    """`python scripts/<x>.py run` from another folder: the script finds the shared module."""
    command = [sys.executable, str(ROOT / "scripts" / script), "run"]
    command += ["127.0.0.1:9"] if script.startswith("prometheus") else []
    with subprocess.Popen(
        command, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(("REDIS_URL=redis://127.0.0.1:", "PROMETHEUS_URL=http://")), (
            proc.stderr.read() if proc.stderr else ""
        )
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        assert answers(port)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
    assert not answers(port)
