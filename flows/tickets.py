"""Tickets flow, keyed by `session_id`.

ingest → validate → enrich_with_channel → parse → session_history → route → draft_reply →
format_response → responses; bad records, and records a step failed on, → dead letters.

Run: `python -m bytewax.run flows.tickets` (see README for settings, scaling and recovery).
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.startup import preflight, prepare_process
from operators.config.settings import Settings
from operators.connectors import io
from operators.connectors.sources import until_stopped
from operators.llm.service import build_service
from operators.runtime.agents import agent_step
from operators.runtime.guard import guarded_map
from operators.runtime.records import OutRecord, RawRecord
from operators.runtime.recovery import bytewax_run_argv, check_recovery
from operators.runtime.shutdown import StopSignal, on_signals
from operators.runtime.validate import Limits, validate
from operators.tickets.enrich import enrich_with_channel
from operators.tickets.intents import IntentIndex
from operators.tickets.parse import load_products, parse_ticket
from operators.tickets.reference import ChannelReference
from operators.tickets.respond import format_response
from operators.tickets.router import route_ticket, route_without_llm
from operators.tickets.sessions import session_history
from operators.tickets.surge import ticket_surge
from operators.tickets.workers import draft_reply, draft_without_llm
from schemas.common import utc_now
from schemas.tickets import TicketMessage

FLOW = "tickets"


def build_flow(
    settings: Optional[Settings] = None,
    *,
    source: Optional[Source[RawRecord]] = None,
    sink: Optional[Sink[OutRecord]] = None,
    stop: Optional[StopSignal] = None,
) -> Dataflow:
    """The tickets dataflow; `source`/`sink` replace the configured transports and `stop`
    the graceful stop that SIGTERM/SIGINT request (tests)."""
    s = settings or Settings()
    prepare_process(s, flow=FLOW)
    check_recovery(s)
    topic = s.topic_tickets_messages
    stop = stop or on_signals(
        s.shutdown_grace_seconds, install=bytewax_run_argv() is not None,
        unbounded_input=source is None and s.kafka_enabled and s.kafka_tail,
    )  # fmt: skip
    source, sink = io.endpoints(s, topic=topic, generator=ticket_surge, source=source, sink=sink)
    preflight(s, flow=FLOW, source=source, sink=sink)
    service = build_service(s, flow=FLOW)
    index = IntentIndex.from_file()
    router = partial(route_ticket, service=service, index=index, settings=s)
    route_by_rules = partial(route_without_llm, service=service, index=index)
    worker = partial(draft_reply, service=service, settings=s)
    template_worker = partial(draft_without_llm, service=service, settings=s)
    session_of, source_of = (lambda t: t.message.session_id), (lambda t: t.source)
    agent = dict(settings=s, flow=FLOW, key=session_of, source=source_of, stop=stop)
    guard = dict(flow=FLOW, key=session_of, source=source_of)

    flow = Dataflow(FLOW)
    raw = io.input_records("ingest", flow, source=until_stopped(source, stop), flow_name=FLOW)
    messages = validate(
        "validate", raw, model=TicketMessage, key_field="session_id", flow=FLOW,
        limits=Limits.from_settings(s),
    )  # fmt: skip
    enriched = enrich_with_channel(
        "enrich_with_channel", messages.valid, reference=ChannelReference.load()
    )
    parse = partial(parse_ticket, products=load_products())
    parsed = guarded_map("parse", enriched.enriched, parse, **guard)
    by_session = op.key_on("key_by_session", parsed.results, session_of)
    sessions = session_history("session_history", by_session, settings=s)
    in_context = op.key_rm("unkey", sessions.contexts)
    routed = agent_step("route", in_context, router, ready=route_by_rules, **agent)
    drafted = agent_step("draft_reply", routed.results, worker, ready=template_worker, **agent)
    responses = guarded_map(
        "format_response", drafted.results, lambda t: format_response(t, now=utc_now()), **guard
    )
    unwritable = io.publish(
        "publish_responses", responses.results, topic=s.topic_tickets_responses,
        key=lambda r: r.session_id, sink=sink, flow_name=FLOW, source=lambda _: io.derived(topic),
    )  # fmt: skip
    dead = op.merge(
        "dead_letters", messages.dead_letters, enriched.dead_letters, parsed.dead_letters,
        sessions.dead_letters, routed.dead_letters, drafted.dead_letters, responses.dead_letters,
        unwritable,
    )  # fmt: skip
    io.publish_dead_letters(
        "publish_dead_letters", dead, topic=s.topic_tickets_dlq, sink=sink, flow_name=FLOW,
        keep_raw=s.dead_letter_raw,
    )  # fmt: skip
    return flow


def __getattr__(name: str) -> Dataflow:
    """`flow`, built when Bytewax asks for it (`python -m bytewax.run flows.tickets`): importing
    this module contacts no service and configures nothing."""
    if name == "flow":
        return build_flow()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
