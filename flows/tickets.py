"""Tickets flow, keyed by `session_id`.

ingest → validate → enrich_with_channel → parse → session_history → route → draft_reply →
format_response → responses; bad records, and records a step failed on, → dead letters.

Run: `python -m bytewax.run flows.tickets` (see README for settings, scaling and recovery).
The spec (topics, models, surge, reference data) is `flows.registry.TICKETS`; the frame around
these steps (ingest, validate, publish, dead letters) is `operators.runtime.skeleton`.
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.registry import TICKETS, TicketReference
from flows.startup import start
from operators.config.settings import Settings
from operators.llm.agent import AgentRunner
from operators.llm.service import build_service
from operators.runtime import skeleton
from operators.runtime.agents import agent_step
from operators.runtime.async_step import StepParams
from operators.runtime.exchange import route_by_key
from operators.runtime.guard import guarded_flat_map_batch
from operators.runtime.records import OutRecord, RawRecord, Valid
from operators.runtime.shutdown import StopSignal
from operators.runtime.skeleton import FlowSteps, Frame
from operators.tickets.domain import ParsedGroup, session_of, source_of
from operators.tickets.enrich import enrich_with_channel
from operators.tickets.parse import parse_tickets
from operators.tickets.respond import format_responses
from operators.tickets.router import RouterAgent
from operators.tickets.sessions import SessionParams, session_history
from operators.tickets.workers import ReplyAgent
from schemas.common import utc_now
from schemas.tickets import TicketMessage, TicketResponse

FLOW = TICKETS.name


def respond(
    frame: Frame[TicketReference], messages: Stream[Valid[TicketMessage]]
) -> FlowSteps[TicketResponse]:
    """The tickets flow's own steps, from validated messages to formatted responses."""
    s, reference = frame.settings, frame.reference
    service = build_service(s, flow=FLOW)
    router = AgentRunner(RouterAgent(reference.intents, s.llm, s.tickets), service)
    worker = AgentRunner(ReplyAgent(s.llm), service)
    step = StepParams.from_settings(s.llm)

    enriched = enrich_with_channel("enrich_with_channel", messages, reference=reference.channels)
    parse = partial(parse_tickets, products=reference.products)
    parsed = guarded_flat_map_batch(
        "parse", enriched.enriched, parse, flow=FLOW, key=session_of, source=source_of
    )
    # Messages cross to their session's worker a batch at a time, not one by one.
    by_session = route_by_key("key_by_session", parsed.results, session_of, group=ParsedGroup)
    sessions = session_history(
        "session_history", by_session, params=SessionParams.from_settings(s.tickets)
    )
    in_context = op.key_rm("unkey", sessions.contexts)
    routed = agent_step(
        "route", in_context, router.answer, ready=router.answer_now, params=step, flow=FLOW,
        key=session_of, source=source_of, stop=frame.stop,
    )  # fmt: skip
    drafted = agent_step(
        "draft_reply", routed.results, worker.answer, ready=worker.answer_now, params=step,
        flow=FLOW, key=session_of, source=source_of, stop=frame.stop,
    )  # fmt: skip
    responses = guarded_flat_map_batch(
        "format_response", drafted.results, partial(format_responses, now=utc_now),
        flow=FLOW, key=session_of, source=source_of,
    )  # fmt: skip
    dead = (
        enriched.dead_letters, parsed.dead_letters, sessions.dead_letters, routed.dead_letters,
        drafted.dead_letters, responses.dead_letters,
    )  # fmt: skip
    return FlowSteps(output=responses.results, dead_letters=dead)


def build_flow(
    settings: Optional[Settings] = None,
    *,
    source: Optional[Source[RawRecord]] = None,
    sink: Optional[Sink[OutRecord]] = None,
    stop: Optional[StopSignal] = None,
) -> Dataflow:
    """The tickets dataflow; `source`/`sink` replace the configured transports and `stop`
    the graceful stop that SIGTERM/SIGINT request (tests)."""
    return skeleton.build(
        TICKETS, respond, settings, start=start, source=source, sink=sink, stop=stop
    )


def __getattr__(name: str) -> Dataflow:
    """`flow`, built when Bytewax asks for it (`python -m bytewax.run flows.tickets`): importing
    this module contacts no service and configures nothing."""
    if name == "flow":
        return build_flow()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
