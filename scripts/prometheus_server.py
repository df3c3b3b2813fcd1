"""A throwaway Prometheus on a free 127.0.0.1 port that scrapes given targets, for tests and local
runs.

    with PrometheusServer(["127.0.0.1:3030"]) as server:
        server.query("sum(surgeflow_records_in_total)")

A static scrape config (job `surgeflow`, a short scrape interval) and a temporary storage
directory, removed by `stop()`; ready when `/-/ready` answers 200. The `prometheus` binary comes
from Debian's package (`scripts/install_test_services.sh`).

CLI: `python scripts/prometheus_server.py run 127.0.0.1:3030 ...` starts one in the foreground and
prints its URL.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Optional

JOB = "surgeflow"


class PrometheusServerError(RuntimeError):
    """`prometheus` is missing, did not start, or a query failed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape_config(targets: list[str], scrape_interval: str) -> str:
    """The configuration file: one static job over `targets` (JSON is YAML)."""
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": JOB,
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": targets}],
            }
        ],
    }
    return json.dumps(config, indent=2)


class PrometheusServer:
    """One `prometheus` process on loopback scraping `targets`; `url` is its HTTP address."""

    def __init__(
        self,
        targets: list[str],
        *,
        scrape_interval: str = "1s",
        binary: str = "prometheus",
        port: Optional[int] = None,
    ) -> None:
        self._targets = targets
        self._interval = scrape_interval
        self._binary = binary
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._dir: Optional[Path] = None
        self.port = port or 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        """Start the server and wait until `/-/ready` answers."""
        path = shutil.which(self._binary)
        if path is None:
            raise PrometheusServerError(
                f"{self._binary} not found; install Debian's prometheus package "
                "(scripts/install_test_services.sh does)"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="surgeflow-prometheus-"))
        config = self._dir / "prometheus.yml"
        config.write_text(scrape_config(self._targets, self._interval))
        self.port = self.port or free_port()
        args = [path, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}"]
        args += [f"--storage.tsdb.path={self._dir / 'data'}", "--storage.tsdb.retention.time=1d"]
        args += ["--web.enable-lifecycle", "--log.level=warn"]
        with (self._dir / "prometheus.log").open("wb") as log:
            self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise PrometheusServerError(f"prometheus exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise PrometheusServerError(f"prometheus not ready after {timeout} s")

    def api(self, endpoint: str, **params: str) -> Any:
        """`GET /api/v1/<endpoint>`; the `data` of a success, else `PrometheusServerError` with
        Prometheus's error (a query that does not parse, for one)."""
        url = f"{self.url}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        if body.get("status") != "success":
            raise PrometheusServerError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str, at: Optional[float] = None) -> list[dict[str, Any]]:
        """An instant query (now, or at the Unix time `at`): its result vector."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        result: list[dict[str, Any]] = data["result"]
        return result

    def log_tail(self, lines: int = 20) -> str:
        if self._dir is None:
            return ""
        log = self._dir / "prometheus.log"
        return (
            "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""
        )

    def stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start one in the foreground until Ctrl-C")
    run.add_argument("targets", nargs="+", help="host:port of each /metrics to scrape")
    run.add_argument("--scrape-interval", default="5s")
    args = parser.parse_args()
    with PrometheusServer(args.targets, scrape_interval=args.scrape_interval) as server:
        print(f"PROMETHEUS_URL={server.url}", flush=True)
        try:
            while server.running:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
