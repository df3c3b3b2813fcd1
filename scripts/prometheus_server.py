"""A throwaway Prometheus on a free 127.0.0.1 port that scrapes given targets, for tests and local
runs.

    with PrometheusServer(["127.0.0.1:3030"]) as server:
        server.query("sum(surgeflow_records_in_total)")

A static scrape config (job `surgeflow`, a short scrape interval) and a temporary storage
directory, removed by `stop()`; ready when `/-/ready` answers 200. The `prometheus` binary comes
from Debian's package (`scripts/install_test_services.sh`); starting, waiting and stopping are
`scripts/server_process.py`'s.

CLI: `python scripts/prometheus_server.py run 127.0.0.1:3030 ...` starts one in the foreground and
prints its URL.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):  # run as `python scripts/prometheus_server.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.server_process import ServerProcess, free_port, run_in_foreground

__all__ = ["PrometheusServer", "PrometheusServerError", "free_port", "scrape_config"]

JOB = "surgeflow"


class PrometheusServerError(RuntimeError):
    """`prometheus` is missing, did not start, or a query failed."""


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


class PrometheusServer(ServerProcess):
    """One `prometheus` process on loopback scraping `targets`; `url` is its HTTP address."""

    binary, package, error = "prometheus", "prometheus", PrometheusServerError
    start_timeout, stop_grace, poll_seconds = 30.0, 10.0, 0.1

    def __init__(
        self,
        targets: list[str],
        *,
        scrape_interval: str = "1s",
        binary: str = "prometheus",
        port: Optional[int] = None,
    ) -> None:
        super().__init__(binary=binary, port=port)
        self._targets = targets
        self._interval = scrape_interval

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, path: str, folder: Path) -> list[str]:
        config = folder / "prometheus.yml"
        config.write_text(scrape_config(self._targets, self._interval))
        args = [path, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}"]
        args += [f"--storage.tsdb.path={folder / 'data'}", "--storage.tsdb.retention.time=1d"]
        return [*args, "--web.enable-lifecycle", "--log.level=warn"]

    def ready(self) -> bool:
        """`/-/ready` answers 200."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start one in the foreground until Ctrl-C")
    run.add_argument("targets", nargs="+", help="host:port of each /metrics to scrape")
    run.add_argument("--scrape-interval", default="5s")
    args = parser.parse_args()
    run_in_foreground(
        PrometheusServer(args.targets, scrape_interval=args.scrape_interval), "PROMETHEUS_URL"
    )


if __name__ == "__main__":
    main()
