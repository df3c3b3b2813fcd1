"""The input parser: text cleaning, entity extraction, parse_ticket."""

import gc
from datetime import UTC, datetime
from pathlib import Path

from operators.tickets.domain import EnrichedTicket
from operators.tickets.parse import (
    MAX_TEXT_CHARS,
    _parses,
    clean_text,
    extract_entities,
    find_products,
    load_products,
    parse_text,
    parse_ticket,
    parse_tickets,
    product_aliases,
)
from schemas import SourceRef, TicketMessage
from schemas.tickets import Entities

SRC = SourceRef(topic="tickets.messages", partition=1, offset=42)
PRODUCTS = ("AeroBlend 3000 blender", "Lumina Pro desk lamp", "ThermoKeep travel mug")


def enriched(body: str, subject: str | None = None) -> EnrichedTicket:
    message = TicketMessage(
        message_id="M-1",
        session_id="S-1",
        channel="email",
        sender="jane@example.com",
        subject=subject,
        body=body,
        sent_at=datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
    )
    return EnrichedTicket(
        message=message, source=SRC, base_priority="normal", response_sla_minutes=240
    )


def test_quoted_reply_is_cut_from_the_header_on() -> None:
    body = (
        "Any update on this?\n\n"
        "On Mon, Nov 23, 2026 at 10:00 AM Support <help@shop.example> wrote:\n"
        "> We are looking into ORD-111111.\n"
    )
    assert clean_text(body) == "Any update on this?"


def test_wrapped_quote_header_and_outlook_header_are_recognised() -> None:
    wrapped = "Thanks!\nOn Mon, Nov 23, 2026 at 10:00 AM Support <help@shop.example>\nwrote:\nold"
    outlook = "Still broken.\nFrom: Support\nSent: Monday\nSubject: ticket\nold text"
    assert clean_text(wrapped) == "Thanks!"
    assert clean_text(outlook) == "Still broken."


def test_lines_starting_with_gt_are_dropped_but_own_lines_kept() -> None:
    body = "> you said it ships today\nIt did not ship.\n>> older\nPlease check."
    assert clean_text(body) == "It did not ship. Please check."


def test_signatures_are_cut() -> None:
    assert clean_text("My lamp is broken.\n-- \nJane Doe\nACME Corp") == "My lamp is broken."
    assert clean_text("Where is it?\n\nSent from my iPhone") == "Where is it?"


def test_html_tags_entities_and_scripts_are_reduced_to_text() -> None:
    body = "<html><style>p{}</style><p>Hello&nbsp;team,</p><p>order <b>ORD-123456</b></p></html>"
    assert clean_text(body) == "Hello team, order ORD-123456"


def test_control_and_zero_width_characters_are_removed_and_whitespace_collapsed() -> None:
    body = "pass\u200bword   reset\x00\x07 not\t\tworking\r\n\n\nhelp"
    assert clean_text(body) == "password reset not working help"


def test_length_is_bounded_at_a_word_boundary() -> None:
    text = clean_text("word " * 1000)
    assert len(text) <= MAX_TEXT_CHARS
    assert text.endswith("word…")


def test_subject_leads_without_reply_prefixes() -> None:
    assert clean_text("It has not arrived.", "Re: FW: Where is my order") == (
        "Where is my order. It has not arrived."
    )
    assert clean_text("Where is my order? It has not arrived.", "Where is my order?") == (
        "Where is my order? It has not arrived."
    )


def test_a_body_of_only_quoted_text_is_kept_rather_than_emptied() -> None:
    assert clean_text("> please refund ORD-222222") == "please refund ORD-222222"


def test_order_ids_are_normalised_and_deduplicated() -> None:
    entities = extract_entities("ord 123456, ORD-123456 and ord_98765 but not ORD-12", ())
    assert entities.order_ids == ["ORD-123456", "ORD-98765"]


def test_emails_are_found_and_lowercased() -> None:
    entities = extract_entities("Write to Jane.Doe@Example.com or ops+it@corp.example.org.", ())
    assert entities.emails == ["jane.doe@example.com", "ops+it@corp.example.org"]


def test_products_match_full_names_and_brand_parts_in_any_case() -> None:
    text = "My aeroblend 3000 and the Lumina Pro desk lamp; not a ThermoKeeper."
    assert find_products(text, PRODUCTS) == ["AeroBlend 3000 blender", "Lumina Pro desk lamp"]
    assert product_aliases("AeroBlend 3000 blender") == ("AeroBlend 3000 blender", "AeroBlend 3000")
    assert find_products("anything", ()) == []


def test_products_load_from_the_product_column_and_absent_file_gives_none(tmp_path: Path) -> None:
    csv_file = tmp_path / "products.csv"
    csv_file.write_text("sku,product\n1,Acme Kettle\n2,\n3,Acme Kettle\n4,Zed Lamp\n")
    assert load_products(csv_file) == ("Acme Kettle", "Zed Lamp")
    assert load_products(tmp_path / "missing.csv") == ()


def test_parse_ticket_keeps_message_source_and_priority_and_uses_injected_products() -> None:
    t = enriched("My Lumina Pro arrived broken, order ORD-555555. Reach me at j@x.example", "Help")
    parsed = parse_ticket(t, products=PRODUCTS)
    assert parsed.message is t.message
    assert parsed.source == SRC
    assert (parsed.base_priority, parsed.response_sla_minutes) == ("normal", 240)
    assert parsed.text.startswith("Help. My Lumina Pro arrived broken")
    assert parsed.entities.order_ids == ["ORD-555555"]
    assert parsed.entities.emails == ["j@x.example"]
    assert parsed.entities.products == ["Lumina Pro desk lamp"]


def test_parse_ticket_defaults_to_the_bundled_product_list() -> None:
    parsed = parse_ticket(enriched("The AeroBlend 3000 blender leaks."))
    assert parsed.entities.products == ["AeroBlend 3000 blender"]
    assert parse_ticket(enriched("It leaks."), products=()).entities.products == []


def test_the_parse_memo_keeps_nothing_for_the_collector_to_walk() -> None:
    """The memo of parses keeps strings and tuples of strings only: once the parsed tickets are
    gone, none of the `Entities` made for them stays alive (the memo kept each one, with its dict,
    lists and set, for every young collection to walk), and what the memo keeps is untracked by
    the cyclic collector after one pass. Parsing again gives the same, from the memo."""
    bodies = [f"My AeroBlend 3000 broke, ORD-{4242000 + n}, jane{n}@example.com" for n in range(40)]
    batch = [enriched(body, "Re: broken") for body in [*bodies, "any update?"]]
    first = [(p.text, p.entities) for p in parse_tickets(batch, products=PRODUCTS)]
    assert all(entities.order_ids for _, entities in first[:-1])
    gc.collect()
    made = [
        o for o in gc.get_objects()
        if type(o) is Entities and any(i.startswith("ORD-42420") for i in o.order_ids)
    ]  # fmt: skip
    assert len(made) == len(bodies)  # held by `first` alone
    del first, made
    gc.collect()
    left = [
        o for o in gc.get_objects()
        if type(o) is Entities and any(i.startswith("ORD-42420") for i in o.order_ids)
    ]  # fmt: skip
    assert left == []
    memo = _parses(PRODUCTS)
    for t in batch:
        kept = memo.kept(t.message.body, t.message.subject)
        assert not gc.is_tracked(kept)
        assert memo.parse(t.message.body, t.message.subject) == parse_text(
            t.message.body, t.message.subject, PRODUCTS
        )
    again = parse_tickets(batch, products=PRODUCTS)
    assert [(p.text, p.entities) for p in again] == [
        parse_text(t.message.body, t.message.subject, PRODUCTS) for t in batch
    ]
