"""Throughput of the tickets flow's rules path, this tree against other revisions, side by side.

Run: `python -m benchmarks.tickets_path [--quick] [--records N] [--rounds R] [--against REF ...]
[--profile]`.

N ticket messages of the seeded surge (`operators.tickets.surge`, steady events N / 11) go
through `python -m bytewax.run flows.tickets` with no LLM endpoint (the lexical router and the
reply templates: the rules path), one worker, in two ways:

- `file`: `SURGEFLOW_INPUT_FILE` → `SURGEFLOW_OUTPUT_DIR` (the fast loop: no broker);
- `kafka`: the messages are produced once onto a topic of this run's own on the broker of
  `KAFKA_BOOTSTRAP_SERVERS` (or one started here by `scripts/kafka_broker.py`), and each run reads
  them to the end (`SURGEFLOW_KAFKA_TAIL=false`) and writes to fresh output topics.

Each round runs every tree, this one (`head`) and a `git archive` of each `--against` (repeatable;
default `main`; named `base <short hash>`), in an order that rotates and reverses from round to
round, so the ratio of a round compares runs made seconds apart on the same machine. A run's
figures: records/s (messages over the process's wall time, start-up included, as a user sees it)
and CPU µs per record (user + system CPU of the process, less that of a run on an empty input
file, over the messages). The output count of every run is checked against the others'.
`--profile` also records each tree once with py-spy (over Kafka when the Kafka runs are made,
else on the file path) and prints the shares of the path's parts and the top functions by their
own samples.

Figures go to stdout and to docs/BENCHMARKS.md (section `tickets-path`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from benchmarks.report import command_line, write_section

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TOPICS = ("messages", "responses", "dlq")
SIZES = {"full": (110_000, 5), "quick": (5_500, 1)}
RUN_TIMEOUT_SECONDS = 1800


@dataclass(frozen=True)
class Tree:
    """A checkout of the project that a run imports its code from."""

    name: str
    path: Path
    revision: str


@dataclass(frozen=True)
class Run:
    tree: str
    transport: str
    records: int
    outputs: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.records / self.wall


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def archive(ref: str, into: Path) -> Tree:
    """`ref` of this repository, unpacked into `into`; the tree is named by its short hash."""
    revision = git("rev-parse", "--short", ref)
    name = f"base {revision}"
    data = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True)
    tar_path = into / f"{revision}.tar"
    tar_path.write_bytes(data.stdout)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into / revision, filter="data")
    return Tree(name, into / revision, f"{ref} ({revision})")


def head_tree() -> Tree:
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return Tree("head", ROOT, f"{git('rev-parse', '--short', 'HEAD')}{dirty}")


def write_messages(path: Path, records: int) -> int:
    """The seeded surge of about `records` messages as JSON lines; returns how many."""
    sys.path.insert(0, str(ROOT))
    from operators.config.settings import Settings
    from operators.connectors.kafka.load import surge_records

    settings = Settings(_env_file=None, surge_steady_events=max(1, records // 11))
    count = 0
    with path.open("wb") as out:
        for record in surge_records(settings, "tickets"):
            if b"\n" in record.value or not record.value.strip():
                continue  # one record per line: the file source splits on newlines
            out.write(record.value + b"\n")
            count += 1
    return count


def base_env() -> dict[str, str]:
    """The environment of a run: no LLM endpoint, no Redis, no Kafka unless a run sets it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SURGEFLOW_", "OPENAI_", "BYTEWAX_"))
        and k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "PYTHONPATH")
    }
    env["SURGEFLOW_LOG_LEVEL"] = "WARNING"
    return env


def timed(cmd: Sequence[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Run `cmd`; return its wall time and the CPU seconds (user + system) it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=cwd, env=env, timeout=RUN_TIMEOUT_SECONDS, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} in {cwd} failed ({done.returncode}):\n{done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def flow_cmd(workers: int) -> list[str]:
    return [PYTHON, "-m", "bytewax.run", "flows.tickets", "-w", str(workers)]


DOMAIN_LOOP = """
import sys, time
from datetime import timedelta
from flows.registry import TicketReference
from operators.config.settings import Settings
from operators.tickets.domain import EnrichedTicket
from operators.tickets.parse import parse_ticket
from operators.tickets.respond import format_response
from operators.tickets.router import RouterAgent
from operators.tickets.sessions import SessionHistory, SessionLogic
from operators.tickets.workers import ReplyAgent
from schemas.common import utc_now
from schemas.dead_letter import SourceRef
from schemas.tickets import TicketMessage

settings = Settings(_env_file=None)
reference = TicketReference.load()
router = RouterAgent(reference.intents, settings.llm, settings.tickets)
worker = ReplyAgent(settings.llm)
channels = {row[0]: row[1:] for row in reference.channels.channels.iter_rows()}
messages = []
for line in open(sys.argv[1], "rb"):
    try:
        messages.append(TicketMessage.model_validate_json(line))
    except Exception:
        pass
sessions = {}
ttl = timedelta(minutes=settings.tickets.session_ttl_minutes)
started = time.process_time()
done = 0
for offset, message in enumerate(messages):
    if message.channel not in channels:
        continue
    priority, sla = channels[message.channel]
    source = SourceRef(topic="tickets.messages", partition=0, offset=offset)
    parsed = parse_ticket(
        EnrichedTicket(message, source, priority, sla), products=reference.products
    )
    logic = sessions.get(message.session_id)
    if logic is None:
        history = SessionHistory(max_messages=settings.tickets.session_max_messages, ttl=ttl)
        logic = sessions[message.session_id] = SessionLogic(history, utc_now)
    (context,), _ = logic.on_item(parsed)
    routed = router.rules(context, None, ())
    drafted = worker.rules(routed, None, ())
    format_response(drafted, now=utc_now()).model_dump_json()
    done += 1
cpu = time.process_time() - started
print(done, cpu)
"""
"""The domain code of the rules path on its own, no Bytewax and no validation of the input (a
loop such as a hand-written consumer would run): validated messages → channel → parse →
session → lexical route → template reply → formatted response → JSON. Prints the messages
done and the CPU seconds of the loop."""


def run_domain(tree: Tree, source: Path) -> tuple[float, float, int]:
    env = base_env() | {"PYTHONPATH": str(tree.path)}
    done = subprocess.run(
        [PYTHON, "-c", DOMAIN_LOOP, str(source)], cwd=tree.path, env=env, check=True,
        capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS,
    )  # fmt: skip
    count, cpu = done.stdout.split()
    return float(cpu), float(cpu), int(count)


def run_file(tree: Tree, source: Path, work: Path, workers: int) -> tuple[float, float, int]:
    out = work / f"out-{uuid.uuid4().hex[:8]}"
    env = base_env() | {
        "PYTHONPATH": str(tree.path),
        "SURGEFLOW_INPUT_FILE": str(source),
        "SURGEFLOW_OUTPUT_DIR": str(out),
    }
    wall, cpu = timed(flow_cmd(workers), cwd=tree.path, env=env)
    outputs = sum(1 for f in out.glob("*.jsonl") for _ in f.open("rb")) if out.exists() else 0
    for f in out.glob("*.jsonl"):
        f.unlink()
    return wall, cpu, outputs


class KafkaBench:
    """The broker side of the `kafka` runs: one input topic, fresh output topics per run."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        from confluent_kafka.admin import AdminClient

        from operators.config.settings import Settings

        self.bootstrap = bootstrap
        self.prefix = prefix
        self.settings = Settings(_env_file=None, kafka_bootstrap_servers=bootstrap)
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.input = f"{prefix}.tickets.messages"
        self.created: list[str] = []

    def create(self, names: list[str]) -> None:
        from operators.connectors.kafka.topics import create_topics

        create_topics(self.settings, names)
        self.created += names

    def load(self, path: Path) -> int:
        from operators.connectors.kafka.load import file_records, load_records

        self.create([self.input])
        records = file_records(path, "session_id")
        return load_records(self.settings, self.input, records, flow="tickets")

    def count(self, topic: str) -> int:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "tickets-bench"})
        try:
            parts = self.admin.list_topics(topic, timeout=10).topics[topic].partitions
            marks = (consumer.get_watermark_offsets(TopicPartition(topic, p), 10) for p in parts)
            return sum(high - low for low, high in marks)
        finally:
            consumer.close()

    def env(self, tree: Tree) -> tuple[dict[str, str], tuple[str, str]]:
        """The environment of a run of `tree` on fresh output topics, and those topics."""
        run_id = uuid.uuid4().hex[:6]
        responses, dlq = f"{self.prefix}.{run_id}.responses", f"{self.prefix}.{run_id}.dlq"
        self.create([responses, dlq])
        env = base_env() | {
            "PYTHONPATH": str(tree.path),
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SURGEFLOW_KAFKA_TAIL": "false",
            "SURGEFLOW_TOPIC_TICKETS_MESSAGES": self.input,
            "SURGEFLOW_TOPIC_TICKETS_RESPONSES": responses,
            "SURGEFLOW_TOPIC_TICKETS_DLQ": dlq,
        }
        return env, (responses, dlq)

    def run(self, tree: Tree, workers: int) -> tuple[float, float, int]:
        env, (responses, dlq) = self.env(tree)
        wall, cpu = timed(flow_cmd(workers), cwd=tree.path, env=env)
        return wall, cpu, self.count(responses) + self.count(dlq)

    def delete(self) -> None:
        if self.created:
            for future in self.admin.delete_topics(self.created, operation_timeout=10).values():
                with contextlib.suppress(Exception):
                    future.result()


@dataclass(frozen=True)
class Profile:
    """py-spy's samples of one run: the shares of `PROFILE_ITEMS` and the top functions."""

    items: list[tuple[str, float]]
    top: list[tuple[str, float]]


def profile(
    tree: Tree, source: Path, work: Path, workers: int, kafka: Optional[KafkaBench] = None
) -> Profile:
    """py-spy's samples of one run of `tree` (over Kafka when `kafka` is given, else the file
    path)."""
    raw = work / f"profile-{tree.name}.txt"
    if kafka is not None:
        env, _ = kafka.env(tree)
    else:
        env = base_env() | {
            "PYTHONPATH": str(tree.path),
            "SURGEFLOW_INPUT_FILE": str(source),
            "SURGEFLOW_OUTPUT_DIR": str(work / f"profile-out-{tree.name}"),
        }
    py_spy = Path(PYTHON).with_name("py-spy")
    record = [str(py_spy), "record", "-r", "200", "--nolineno", "--format", "raw", "-o", str(raw)]
    record.append("--")
    cmd = [*record, *flow_cmd(workers)]
    timed(cmd, cwd=tree.path, env=env)
    text = raw.read_text(encoding="utf-8")
    return Profile(shares(text), top_functions(text))


PROFILE_ITEMS: dict[str, Union[str, tuple[str, ...]]] = {
    "validate (runtime: bytes → TicketMessage)": (  # a batch at a time; earlier, a record
        "validate.<locals>.parse_batch (",
        "parse_record (operators/runtime/",
    ),
    "enrich_with_channel (channel join)": "join_tickets (operators/tickets/",
    "parse (clean text, entities)": (  # a batch at a time in the flow, a message in the loop
        "parse_tickets (operators/tickets/",
        "parse_ticket (operators/tickets/",
    ),
    "session_history (state, turns)": "SessionLogic.on_item (operators/tickets/",
    "route: lexical router": "route_lexically (operators/tickets/",
    "draft_reply: priority and template": "ReplyAgent.rules (operators/tickets/",
    "agent steps (runtime; both steps, the two agents included)": (
        "LaneLogic.on_batch (",
        "map_async.<locals>.answer_all (",
    ),
    "format_response": "format_response (operators/tickets/",
    "publish (runtime: model_dump_json, out record)": "publish.<locals>",
    "pydantic (everywhere)": "(pydantic/",
}
"""What the profile table reports: a name and the frame text (or texts) that marks its samples:
the agent steps run in lanes (`LaneLogic`), or a batch at a time when no call can be made."""


def shares(raw: str) -> list[tuple[str, float]]:
    """Inclusive share of the samples after start-up (importing and building the flow is left
    out) of each of `PROFILE_ITEMS`, from py-spy's raw (collapsed stack) output."""
    counts: Counter[str] = Counter()
    total = 0
    for frames, n in _after_start_up(raw):
        stack = ";".join(frames)
        total += n
        for item, marks in PROFILE_ITEMS.items():
            if any(mark in stack for mark in ((marks,) if isinstance(marks, str) else marks)):
                counts[item] += n
    return [(item, 100.0 * counts[item] / total) for item in PROFILE_ITEMS] if total else []


def _after_start_up(raw: str) -> Iterator[tuple[list[str], int]]:
    """The stacks (outermost frame first) and sample counts of py-spy's raw output, without
    those of importing and building the flow."""
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if "_locate_dataflow" in stack or "importlib" in stack:
            continue
        yield stack.split(";"), int(n)


TOP_FUNCTIONS = 15


def top_functions(raw: str, count: int = TOP_FUNCTIONS) -> list[tuple[str, float]]:
    """The `count` functions with the most samples of their own (the innermost frame; a
    function's callees not counted), as shares of the samples after start-up."""
    own: Counter[str] = Counter()
    total = 0
    for frames, n in _after_start_up(raw):
        total += n
        own[frames[-1]] += n
    return [(name, 100.0 * n / total) for name, n in own.most_common(count)] if total else []


def median_ratio(runs: list[Run], transport: str, value: str, base: str) -> Optional[float]:
    """Median over rounds of head's figure over `base`'s in the same round."""
    pairs = [r for r in runs if r.transport == transport]
    of_base = [getattr(r, value) for r in pairs if r.tree == base]
    head = [getattr(r, value) for r in pairs if r.tree == "head"]
    ratios = [h / b for h, b in zip(head, of_base, strict=False) if b]
    return statistics.median(ratios) if ratios else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a small check that it works; no section written"
    )
    parser.add_argument("--records", type=int, help="messages per run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds")
    parser.add_argument(
        "--against", action="append",
        help="git ref of a base tree (repeat for several; default main)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="bytewax workers (-w)")
    parser.add_argument(
        "--transport", choices=("all", "domain", "file", "kafka"), default="all",
        help="domain: the domain code in a plain loop; file, kafka: the flow",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true",
        help="py-spy each tree once (over Kafka when it runs, else the file path)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    size, rounds = SIZES["quick" if args.quick else "full"]
    size, rounds = args.records or size, args.rounds or rounds
    every = ("domain", "file", "kafka")
    transports = every if args.transport == "all" else (args.transport,)
    refs = args.against or ["main"]

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tickets-bench-")))
        trees = [head_tree()]
        by_revision = {git("rev-parse", "--short", ref): ref for ref in refs}
        trees += [archive(ref, work) for ref in by_revision.values()]
        source, empty = work / "messages.jsonl", work / "empty.jsonl"
        records = write_messages(source, size)
        empty.write_bytes(b"")
        print(f"{records} messages; " + ", ".join(f"{t.name} = {t.revision}" for t in trees))
        kafka: Optional[KafkaBench] = None
        if "kafka" in transports:
            from scripts.kafka_broker import given_or_started

            bootstrap = stack.enter_context(given_or_started())
            kafka = KafkaBench(bootstrap, f"bench-{uuid.uuid4().hex[:8]}")
            stack.callback(kafka.delete)
            print(f"loaded {kafka.load(source)} messages onto {kafka.input} ({bootstrap})")

        idle = {t.name: run_file(t, empty, work, args.workers)[1] for t in trees}
        idle_text = ", ".join(f"{k} {v:.2f} s" for k, v in idle.items())
        print(f"CPU of a run on an empty input: {idle_text}")
        runs: list[Run] = []
        for round_no in range(rounds):
            order = trees[round_no % len(trees) :] + trees[: round_no % len(trees)]
            order = order if round_no % 2 == 0 else order[::-1]
            for transport in transports:
                for tree in order:
                    idle_cpu = idle[tree.name]
                    if transport == "domain":
                        wall, cpu, outputs = run_domain(tree, source)
                        idle_cpu = 0.0
                    elif transport == "file":
                        wall, cpu, outputs = run_file(tree, source, work, args.workers)
                    else:
                        assert kafka is not None
                        wall, cpu, outputs = kafka.run(tree, args.workers)
                    run = Run(tree.name, transport, records, outputs, wall, cpu - idle_cpu)
                    runs.append(run)
                    print(
                        f"round {round_no + 1}/{rounds} {transport:5} {tree.name}: "
                        f"{run.rate:8.0f} records/s, {1e6 * run.cpu / records:6.1f} CPU µs/record, "
                        f"{outputs} outputs",
                        flush=True,
                    )
        profiles = {
            t.name: profile(t, source, work, args.workers, kafka) for t in trees if args.profile
        }

    body = report(runs, trees, records, args, profiles, rounds)
    print(body)
    firsts = {r.transport: r.outputs for r in reversed(runs)}
    if bad := [r for r in runs if r.outputs != firsts[r.transport]]:
        print(f"OUTPUT COUNTS DIFFER: {bad}")
        return 1
    if args.quick:
        return 0  # a check that it works: its figures are not the section's
    path = write_section(
        "tickets-path", "Tickets flow: rules path, this tree against base revisions",
        command_line(), body,
    )  # fmt: skip
    print(f"wrote {path}")
    return 0


def report(
    runs: list[Run],
    trees: list[Tree],
    records: int,
    args: argparse.Namespace,
    profiles: dict[str, Profile],
    rounds: int,
) -> str:
    bases = [t.name for t in trees[1:]]
    revisions = ", ".join(f"{t.name} = {t.revision}" for t in trees)
    lines = [
        f"{records} surge messages per run through `python -m bytewax.run flows.tickets -w "
        f"{args.workers}` with no LLM endpoint (lexical router, reply templates); {revisions}; "
        f"{rounds} interleaved rounds (the order rotates each round). "
        "`domain` is the domain code alone in a plain loop (parse, session, lexical route, "
        "template reply, response and its JSON; CPU of the loop, no Bytewax, no input "
        "validation); `file` and `kafka` are the flow. Records/s of the flow counts the whole "
        "process (start-up included); its CPU µs per record is the process's user + system CPU "
        "less that of a run on an empty input.",
        "",
        "| transport | tree | records/s (median) | CPU µs/record (median) | outputs |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for transport in dict.fromkeys(r.transport for r in runs):
        for tree in [*bases, "head"]:
            mine = [r for r in runs if r.transport == transport and r.tree == tree]
            if mine:
                rate = statistics.median(r.rate for r in mine)
                cpu = statistics.median(1e6 * r.cpu / r.records for r in mine)
                lines.append(
                    f"| {transport} | {tree} | {rate:,.0f} | {cpu:,.1f} | {mine[0].outputs} |"
                )
    for base in bases:
        lines += ["", f"Within-round ratios, head over {base} (median over rounds):", ""]
        for transport in dict.fromkeys(r.transport for r in runs):
            speed = median_ratio(runs, transport, "rate", base)
            per_cpu = median_ratio(runs, transport, "cpu", base)
            if speed is not None and per_cpu is not None:
                lines.append(
                    f"- {transport}: records/s ×{speed:.2f}; CPU per record ×{per_cpu:.2f} "
                    f"(records per CPU-second ×{1 / per_cpu:.2f})"
                )
    if profiles:
        where = "over Kafka" if "kafka" in {r.transport for r in runs} else "on the file path"
        shown = [n for n in [*bases, "head"] if n in profiles]
        lines += [
            "",
            f"py-spy (one run of each tree {where}, 200 samples/s): inclusive share of the "
            "samples after start-up. The shares are of each run's own total; the CPU figures "
            "above say how the totals compare.",
            "",
            "| part of the path | " + " | ".join(shown) + " |",
            "| --- |" + " ---: |" * len(shown),
        ]
        items = {n: dict(profiles[n].items) for n in shown}
        for item in PROFILE_ITEMS:
            cells = " | ".join(f"{items[n].get(item, 0.0):.1f}%" for n in shown)
            lines.append(f"| {item} | {cells} |")
        for name in shown:
            lines += [
                "",
                f"Top {TOP_FUNCTIONS} functions of {name} by own samples (callees not counted):",
                "",
                "| function | share |",
                "| --- | ---: |",
            ]
            for function, share in profiles[name].top:
                lines.append(f"| `{function.replace('|', '/')}` | {share:.1f}% |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
