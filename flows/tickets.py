"""Tickets flow, keyed by `session_id`.

ingest → validate → enrich_with_channel → parse → session_history → route → draft_reply →
format_response → responses; every failure on the way → dead letters.

Run: `python -m bytewax.run flows.tickets` (see README for settings, scaling and recovery).
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from flows.settings import Settings
from operators import io
from operators.dead_letter import split_failures
from operators.enrich import enrich_with_channel
from operators.llm.operator import map_async
from operators.llm.service import build_service
from operators.parse import load_products, parse_ticket
from operators.records import OutRecord, RawRecord
from operators.reference import ChannelReference
from operators.respond import format_response
from operators.route import IntentIndex, route_ticket
from operators.sessions import session_history
from operators.surge import ticket_surge
from operators.validate import Limits, count_dead_letters, validate
from operators.workers import draft_reply
from schemas.common import utc_now
from schemas.tickets import TicketMessage


def build_flow(
    settings: Optional[Settings] = None,
    *,
    source: Optional[Source[RawRecord]] = None,
    sink: Optional[Sink[OutRecord]] = None,
) -> Dataflow:
    """The tickets dataflow; `source`/`sink` replace the configured transports (tests)."""
    settings = settings or Settings()
    io.check_services(settings)
    topic = settings.topic_tickets_messages
    source = source or io.embedded_source(settings, topic=topic, generator=ticket_surge)
    sink = sink or io.embedded_sink(settings)
    service = build_service(settings)
    index = IntentIndex.from_file()
    products = load_products()
    limits = Limits(max_bytes=settings.max_record_bytes, max_depth=settings.max_json_depth)
    failed = dict(flow="tickets", key=lambda t: t.message.session_id, source=lambda t: t.source)

    flow = Dataflow("tickets")
    raw = io.input_records("ingest", flow, source=source, flow_name="tickets")
    messages = validate(
        "validate",
        raw,
        model=TicketMessage,
        key_field="session_id",
        flow="tickets",
        limits=limits,
    )
    enriched = enrich_with_channel(
        "enrich_with_channel", messages.valid, reference=ChannelReference.load()
    )
    parsed = op.map("parse", enriched.enriched, partial(parse_ticket, products=products))
    by_session = op.key_on("key_by_session", parsed, lambda t: t.message.session_id)
    in_context = op.key_rm(
        "unkey", session_history("session_history", by_session, settings=settings)
    )
    routed = split_failures(
        "collect_route_failures",
        map_async(
            "route",
            in_context,
            partial(route_ticket, service=service, index=index, settings=settings),
            settings=settings,
        ),
        **failed,
    )
    drafted = split_failures(
        "collect_reply_failures",
        map_async(
            "draft_reply",
            routed.results,
            partial(draft_reply, service=service, settings=settings),
            settings=settings,
        ),
        **failed,
    )
    responses = op.map(
        "format_response", drafted.results, lambda t: format_response(t, now=utc_now())
    )
    dead = op.merge(
        "dead_letters",
        messages.dead_letters,
        enriched.dead_letters,
        routed.dead_letters,
        drafted.dead_letters,
    )
    io.publish(
        "publish_responses",
        responses,
        topic=settings.topic_tickets_responses,
        key=lambda r: r.session_id,
        sink=sink,
        flow_name="tickets",
    )
    io.publish(
        "publish_dead_letters",
        count_dead_letters("count_dead_letters", dead, flow="tickets"),
        topic=settings.topic_tickets_dlq,
        key=lambda d: d.key,
        sink=sink,
        flow_name="tickets",
    )
    return flow


flow = build_flow()
