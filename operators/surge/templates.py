"""Template text of the surge generators, read from the JSON files in the shipped `data/templates/`.

- `shipment_notes.json`: exception categories (weight and carrier notes each) and delay notes;
- `ticket_messages.json`: what customers (`customer`, `chat`) and staff (`staff`) write per
  route, email `subjects` per route and `follow_ups` per channel;
- `ticket_framing.json`: greetings, closings, signatures, quote headers and the other
  phrasings wrapped around a message;
- `ticket_senders.json`: first and last names and mail domains of the senders.

Each file is read once and checked when it is loaded (keys, types, non-empty lists, known
`{placeholders}`), so a broken file stops a surge before its first record with a message that
names the file and the entry, instead of mid-stream.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from functools import cache
from importlib.resources.abc import Traversable
from typing import Any, Optional

from operators.errors import SurgeflowError
from operators.runtime.resources import data_file

TEMPLATES_DIR = data_file("templates")

Texts = tuple[str, ...]


class TemplateDataError(SurgeflowError, ValueError):
    """A template file is missing, not JSON, or not shaped as the surge generators expect."""


@dataclass(frozen=True)
class ShipmentNotes:
    exception_weights: dict[str, int]  # category -> weight, in file order
    exception_notes: dict[str, Texts]
    delay_notes: tuple[Optional[str], ...]  # None: a delay scan without a note


@dataclass(frozen=True)
class TicketTextNeeds:
    """What the ticket generator looks up and fills in, to check the files against."""

    customer_routes: Texts
    staff_routes: Texts
    channels: Texts
    placeholders: frozenset[str]


@dataclass(frozen=True)
class TicketTexts:
    customer: dict[str, Texts]
    chat: dict[str, Texts]
    staff: dict[str, Texts]
    subjects: dict[str, Texts]
    follow_ups: dict[str, Texts]
    generic_follow_ups: dict[str, Texts]  # the follow-ups that name no order
    greetings: Texts
    context: Texts
    closings: Texts
    signatures: Texts
    quote_headers: Texts
    staff_greetings: Texts
    staff_thanks: Texts
    chat_openers: Texts
    chat_endings: Texts
    switch_leads: dict[str, str]
    detail_leads: dict[str, str]
    first_names: Texts
    last_names: Texts
    mail_domains: Texts
    staff_domain: str


class _TemplateFile:
    """One JSON object of named entries, with checked accessors that name the bad entry.

    `placeholders` are the `{names}` a text may use when it is filled in with `str.format_map`;
    None for a file whose texts are used as they are.
    """

    def __init__(
        self, path: Traversable, keys: tuple[str, ...], placeholders: Optional[frozenset[str]]
    ) -> None:
        self.path, self.placeholders = path, placeholders
        self.data = _read_object(path)
        missing = [key for key in keys if key not in self.data]
        if missing:
            raise TemplateDataError(f"{path}: missing keys {missing}")
        unexpected = [key for key in self.data if key not in keys]
        if unexpected:
            raise TemplateDataError(f"{path}: unexpected keys {unexpected}")

    def error(self, where: str, problem: str) -> TemplateDataError:
        return TemplateDataError(f"{self.path}: {where} {problem}")

    def text(self, where: str, value: Any, *, blank: bool = False) -> str:
        if not isinstance(value, str) or (not blank and not value.strip()):
            raise self.error(where, f"must be a {'' if blank else 'non-blank '}string")
        if self.placeholders is not None:
            self._check_placeholders(where, value, self.placeholders)
        return value

    def text_list(self, where: str, value: Any, *, blank: bool = False) -> Texts:
        if not isinstance(value, list) or not value:
            raise self.error(where, "must be a non-empty list of strings")
        return tuple(self.text(f"{where}[{i}]", text, blank=blank) for i, text in enumerate(value))

    def texts(self, key: str, *, blank: bool = False) -> Texts:
        return self.text_list(key, self.data[key], blank=blank)

    def table(self, key: str, required: Texts = ()) -> dict[str, Texts]:
        """An object of text lists, holding at least the `required` names."""
        entries = self.entries(key, required)
        return {name: self.text_list(f"{key}.{name}", value) for name, value in entries.items()}

    def leads(self, key: str, required: Texts) -> dict[str, str]:
        """An object of single texts (may be empty), holding at least the `required` names."""
        entries = self.entries(key, required)
        return {
            name: self.text(f"{key}.{name}", text, blank=True) for name, text in entries.items()
        }

    def entries(self, key: str, required: Texts = ()) -> dict[str, Any]:
        entries = self.data[key]
        if not isinstance(entries, dict) or not entries:
            raise self.error(key, "must be a non-empty object")
        missing = [name for name in required if name not in entries]
        if missing:
            raise self.error(key, f"lacks entries for {missing}")
        return entries

    def _check_placeholders(self, where: str, value: str, placeholders: frozenset[str]) -> None:
        try:
            fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(value)]
        except ValueError as exc:
            raise self.error(where, f"is not a valid template ({exc}): {value!r}") from exc
        for name, spec, conversion in fields:
            if name is not None and (name not in placeholders or spec or conversion):
                known = ", ".join(f"{{{known}}}" for known in sorted(placeholders))
                raise self.error(where, f"uses {{{name}}}; the placeholders are {known}: {value!r}")


def _read_object(path: Traversable) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TemplateDataError(f"cannot read template file {path}: {exc}") from exc
    except ValueError as exc:
        raise TemplateDataError(f"template file {path} is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise TemplateDataError(f"template file {path} must hold a JSON object")
    return data


@cache
def load_shipment_notes(directory: Traversable = TEMPLATES_DIR) -> ShipmentNotes:
    """The carrier notes of `shipment_notes.json` (read once per directory)."""
    file = _TemplateFile(directory / "shipment_notes.json", ("exceptions", "delay_notes"), None)
    weights, notes = {}, {}
    for category, entry in file.entries("exceptions").items():
        where = f"exceptions.{category}"
        if not isinstance(entry, dict) or sorted(entry) != ["notes", "weight"]:
            raise file.error(where, "must be an object with just a weight and notes")
        if type(entry["weight"]) is not int or entry["weight"] < 0:
            raise file.error(f"{where}.weight", "must be an integer >= 0")
        weights[category] = entry["weight"]
        notes[category] = file.text_list(f"{where}.notes", entry["notes"])
    if not sum(weights.values()):
        raise file.error("exceptions", "must give at least one category a weight above 0")
    return ShipmentNotes(weights, notes, _delay_notes(file))


def _delay_notes(file: _TemplateFile) -> tuple[Optional[str], ...]:
    notes = file.data["delay_notes"]
    if not isinstance(notes, list) or not notes:
        raise file.error("delay_notes", "must be a non-empty list of strings and nulls")
    return tuple(
        None if note is None else file.text(f"delay_notes[{i}]", note)
        for i, note in enumerate(notes)
    )


_FRAMING_LISTS = (
    "greetings",
    "context",
    "closings",
    "signatures",
    "quote_headers",
    "staff_greetings",
    "staff_thanks",
    "chat_openers",
    "chat_endings",
)
_FRAMING_KEYS = (*_FRAMING_LISTS, "switch_leads", "detail_leads")
_MAY_BE_EMPTY = frozenset({"staff_greetings", "staff_thanks", "chat_openers", "chat_endings"})
_SENDER_KEYS = ("first_names", "last_names", "mail_domains", "staff_domain")


@cache
def load_ticket_texts(
    needs: TicketTextNeeds, directory: Traversable = TEMPLATES_DIR
) -> TicketTexts:
    """The texts of the three `ticket_*.json` files (read once per directory), checked against
    the routes, channels and placeholders the ticket generator uses."""
    messages = _TemplateFile(
        directory / "ticket_messages.json",
        ("customer", "chat", "staff", "subjects", "follow_ups"),
        needs.placeholders,
    )
    framing = _TemplateFile(directory / "ticket_framing.json", _FRAMING_KEYS, needs.placeholders)
    senders = _TemplateFile(directory / "ticket_senders.json", _SENDER_KEYS, None)
    follow_ups = messages.table("follow_ups", needs.channels)
    return TicketTexts(
        customer=messages.table("customer", needs.customer_routes),
        chat=messages.table("chat"),
        staff=messages.table("staff", needs.staff_routes),
        subjects=messages.table("subjects", ("general",)),
        follow_ups=follow_ups,
        generic_follow_ups=_without_order(messages, follow_ups),
        **{key: framing.texts(key, blank=key in _MAY_BE_EMPTY) for key in _FRAMING_LISTS},
        switch_leads=framing.leads("switch_leads", needs.channels),
        detail_leads=framing.leads("detail_leads", needs.channels),
        first_names=senders.texts("first_names"),
        last_names=senders.texts("last_names"),
        mail_domains=senders.texts("mail_domains"),
        staff_domain=senders.text("staff_domain", senders.data["staff_domain"]),
    )


def _without_order(file: _TemplateFile, follow_ups: dict[str, Texts]) -> dict[str, Texts]:
    """Per channel, the follow-ups that do not mention `{order}`, for routes without an order."""
    generic = {}
    for channel, texts in follow_ups.items():
        generic[channel] = tuple(text for text in texts if "{order}" not in text)
        if not generic[channel]:
            raise file.error(f"follow_ups.{channel}", "needs a follow-up that names no {order}")
    return generic
