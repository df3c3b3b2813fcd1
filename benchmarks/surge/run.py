"""One measured run of a flow: fresh topics, the flow's processes, the paced generator in its own
process, and a sample every second of what goes in, what comes out and what it costs.

The flow is started the production way, `python -m bytewax.run flows.<flow> [-i I -a ...]`, with
Kafka input and output, Redis for the cache and the shared limits, and the OpenAI-compatible test
server as its endpoint. Each process serves the dataflow API on a free port of its own
(`BYTEWAX_DATAFLOW_API_PORT`), which the sampler scrapes; Bytewax binds it to 0.0.0.0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

from confluent_kafka.admin import AdminClient

from operators.config.settings import Settings
from operators.connectors.kafka.config import client_config
from operators.connectors.kafka.topics import create_topics

from .measure import Latencies, Offsets, Scraped, proc_stats, scrape

ROOT = Path(__file__).resolve().parents[2]
SERVICE_VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")
TOPIC_VARIABLES = {
    "shipments": (
        "SURGEFLOW_TOPIC_SHIPMENTS_EVENTS",
        "SURGEFLOW_TOPIC_SHIPMENTS_DECISIONS",
        "SURGEFLOW_TOPIC_SHIPMENTS_DLQ",
    ),
    "tickets": (
        "SURGEFLOW_TOPIC_TICKETS_MESSAGES",
        "SURGEFLOW_TOPIC_TICKETS_RESPONSES",
        "SURGEFLOW_TOPIC_TICKETS_DLQ",
    ),
}
DEFAULT_TOPICS = {
    "shipments": ("shipments.events", "shipments.decisions", "shipments.dlq"),
    "tickets": ("tickets.messages", "tickets.responses", "tickets.dlq"),
}
START_TIMEOUT = 90.0


@dataclass(frozen=True)
class Endpoint:
    """The LLM endpoint's behaviour, as the command line sets it."""

    p50: float = 0.4
    p99: float = 4.0
    rpm: int = 3000
    error_rate: float = 0.01
    seed: int = 5


@dataclass(frozen=True)
class FlowConfig:
    """What the flow's processes are told besides their topics and services."""

    partitions: int = 4
    llm_rpm: int = 0  # the flow's own shared limit (SURGEFLOW_LLM_REQUESTS_PER_MINUTE)
    budget_usd_per_minute: float = 0.0
    extra: tuple[tuple[str, str], ...] = ()

    def variables(self) -> dict[str, str]:
        env = {
            "SURGEFLOW_LLM_REQUESTS_PER_MINUTE": str(self.llm_rpm),
            "SURGEFLOW_LLM_BUDGET_USD_PER_MINUTE": f"{self.budget_usd_per_minute:g}",
        }
        return {**env, **dict(self.extra)}


@dataclass
class Sample:
    """What was measured at one moment of a run (cumulative figures; rates come from deltas)."""

    t: float  # seconds since the generator started
    phase: int
    sent: int
    appended: int
    written: int  # outputs
    dead: int  # dead letters
    scraped: dict[str, Any]
    rss_bytes: int
    cpu_seconds: float
    outputs_read: int
    latencies: list[float] = field(default_factory=list)  # of outputs written in this second


@dataclass
class RunResult:
    """A run's samples and totals."""

    flow: str
    processes: int
    phases: list[tuple[float, float]]
    samples: list[Sample]
    generator_end: float  # t at which the generator finished
    drained: bool
    sources: dict[str, int]  # outputs by enrichment source (llm, cache, rules)
    reasons: dict[str, int]  # outputs by fallback reason
    output_cost: float  # cost carried by the outputs (enrichment and routing)
    unpaired: int

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["samples"] = [dict(s.__dict__) for s in self.samples]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        samples = [Sample(**s) for s in data["samples"]]
        phases = [(float(r), float(s)) for r, s in data["phases"]]
        return cls(**{**data, "samples": samples, "phases": phases})


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@contextmanager
def llm_endpoint(endpoint: Endpoint, log: Any = subprocess.DEVNULL) -> Iterator[str]:
    """The test server in a process of its own (stderr to `log`); yields its base URL."""
    command = [sys.executable, "-m", "tests.support.openai_server"]
    command += ["--p50", str(endpoint.p50), "--p99", str(endpoint.p99), "--rpm", str(endpoint.rpm)]
    command += ["--error-rate", str(endpoint.error_rate), "--seed", str(endpoint.seed)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the LLM test server did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def flow_env(
    flow: str,
    topics: tuple[str, str, str],
    services: dict[str, str],
    config: FlowConfig,
    work: Path,
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SURGEFLOW_", "BYTEWAX_")) and k not in SERVICE_VARIABLES
    }
    env |= dict(zip(TOPIC_VARIABLES[flow], topics, strict=True))
    env |= services | config.variables()
    env |= {
        "PYTHONPATH": str(ROOT),
        "SURGEFLOW_KAFKA_TAIL": "true",
        "SURGEFLOW_LOG_LEVEL": "WARNING",
        "BYTEWAX_DATAFLOW_API_ENABLED": "1",
        "BYTEWAX_DATAFLOW_API_CACHE_PATH": str(work),
    }
    return env


class Flow:
    """`python -m bytewax.run flows.<flow>` as one process or a cluster, each with its API port."""

    def __init__(self, flow: str, env: dict[str, str], processes: int, logs: Path) -> None:
        self.ports = free_ports(processes)
        addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(processes))
        command = [sys.executable, "-m", "bytewax.run", f"flows.{flow}", "-w", "1"]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        logs.mkdir(parents=True, exist_ok=True)
        for index, port in enumerate(self.ports):
            args = command + (["-i", str(index), "-a", addresses] if processes > 1 else [])
            log = logs / f"{flow}-p{index}.log"
            with log.open("wb") as out:
                proc_env = {**env, "BYTEWAX_DATAFLOW_API_PORT": str(port)}
                self.procs.append(
                    subprocess.Popen(
                        args, cwd=ROOT, env=proc_env, stdout=out, stderr=subprocess.STDOUT
                    )
                )
            self.logs.append(log)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running()
            if all(scrape(p) is not None for p in self.ports):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the flow's API did not answer in {timeout} s:\n{self.log_tail()}")

    def check_running(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a flow process ended ({proc.returncode}):\n{self.log_tail()}")

    def scrape(self) -> Scraped:
        total = Scraped()
        for port in self.ports:
            found = scrape(port)
            if found is not None:
                total = total.add(found)
        return total

    def stats(self) -> tuple[int, float]:
        rss, cpu = 0, 0.0
        for proc in self.procs:
            found = proc_stats(proc.pid)
            if found is not None:
                rss, cpu = rss + found.rss_bytes, cpu + found.cpu_seconds
        return rss, cpu

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(p.read_text(errors="replace")[-chars:] for p in self.logs if p.exists())

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def fresh_topics(settings: Settings, flow: str, partitions: int) -> tuple[str, str, str]:
    prefix = f"surge-{uuid.uuid4().hex[:8]}"
    topics = tuple(f"{prefix}.{name}" for name in DEFAULT_TOPICS[flow])
    create_topics(settings, list(topics), partitions=partitions)
    return topics  # type: ignore[return-value]


def delete_topics(settings: Settings, topics: tuple[str, ...]) -> None:
    """Delete a run's own topics (best effort: the figures are already taken)."""
    admin = AdminClient(client_config(settings.kafka))
    for future in admin.delete_topics(list(topics), operation_timeout=10).values():
        with suppress(Exception):  # a topic left behind costs disk, not a wrong figure
            future.result(15)


def measure(
    flow: str,
    *,
    settings: Settings,
    services: dict[str, str],
    config: FlowConfig,
    processes: int,
    phases: list[tuple[float, float]],
    seed: int = 7,
    steady: int = 2000,
    burst: int = 10,
    drain_limit: float = 60.0,
    interval: float = 1.0,
    progress: Optional[Callable[[float, str], None]] = None,
) -> RunResult:
    """Run the flow against `phases` of paced input, then up to `drain_limit` s with none."""
    work = Path(tempfile.mkdtemp(prefix="surgeflow-surge-"))
    topics = fresh_topics(settings, flow, config.partitions)
    env = flow_env(flow, topics, services, config, work)
    running = Flow(flow, env, processes, work / "logs")
    offsets = Offsets(settings, list(topics))
    lateness = timedelta(minutes=Settings().shipments.allowed_lateness_minutes)
    latencies = Latencies(settings, flow, topics[0], topics[1], lateness)
    generator: Optional[subprocess.Popen[bytes]] = None
    samples: list[Sample] = []
    try:
        running.wait_ready()
        status = work / "generator.json"
        command = [sys.executable, "-m", "benchmarks.surge.generator", flow, topics[0]]
        command += ["--phases", json.dumps(phases), "--status", str(status)]
        command += ["--seed", str(seed), "--steady", str(steady), "--burst", str(burst)]
        generator_env = {**os.environ, "PYTHONPATH": str(ROOT)}
        generator_env["KAFKA_BOOTSTRAP_SERVERS"] = services["KAFKA_BOOTSTRAP_SERVERS"]
        generator = subprocess.Popen(command, cwd=ROOT, env=generator_env)
        while not status.exists():  # its imports and client take a moment; time starts after
            if generator.poll() is not None:
                raise RuntimeError(f"the generator ended ({generator.returncode}) at its start")
            time.sleep(0.05)
        started, started_wall = time.monotonic(), time.time()
        generator_end: Optional[float] = None
        total = sum(seconds for _, seconds in phases)
        drained = False
        while True:
            next_at = started + (len(samples) + 1) * interval
            while time.monotonic() < next_at:
                latencies.poll(min(0.2, max(next_at - time.monotonic(), 0.0)))
            running.check_running()
            gen = _read_status(status)
            appended = offsets.appended(topics[0])
            scraped = running.scrape()
            rss, cpu = running.stats()
            t = time.monotonic() - started
            samples.append(
                Sample(
                    t=t,
                    phase=int(gen.get("phase", 0)),
                    sent=int(gen.get("sent", 0)),
                    appended=appended,
                    written=offsets.appended(topics[1]),
                    dead=offsets.appended(topics[2]),
                    scraped=scraped.to_json(),
                    rss_bytes=rss,
                    cpu_seconds=cpu,
                    outputs_read=latencies.outputs,
                )
            )
            if progress is not None:
                progress(min(t, total), f"{flow} x{processes}: {samples[-1].appended} in")
            if generator_end is None and generator.poll() is not None:
                if generator.returncode != 0:
                    raise RuntimeError(f"the generator failed ({generator.returncode})")
                generator_end = t
            if generator_end is not None:
                backlog = appended - scraped.records_in + scraped.pending
                if backlog <= 0 and _settled(samples):
                    drained = True
                    break
                if t - generator_end > drain_limit:
                    break
        latencies.poll(0.5)
        latencies.flush()
        for at, latency in latencies.pairs:  # each latency goes with the second it was written in
            index = min(max(int((at - started_wall) / interval), 0), len(samples) - 1)
            samples[index].latencies.append(latency)
        return RunResult(
            flow=flow,
            processes=processes,
            phases=phases,
            samples=samples,
            generator_end=generator_end or 0.0,
            drained=drained,
            sources=dict(latencies.sources),
            reasons=dict(latencies.reasons),
            output_cost=latencies.output_cost,
            unpaired=latencies.unpaired,
        )
    finally:
        if generator is not None and generator.poll() is None:
            generator.kill()
            generator.wait(5)
        running.stop()
        offsets.close()
        latencies.close()
        delete_topics(settings, topics)
        shutil.rmtree(work, ignore_errors=True)


def _settled(samples: list[Sample], seconds: int = 3) -> bool:
    """Outputs and dead letters unchanged over the last `seconds` samples."""
    if len(samples) <= seconds:
        return False
    recent = samples[-seconds - 1 :]
    return len({(s.written, s.dead) for s in recent}) == 1


def _read_status(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}
