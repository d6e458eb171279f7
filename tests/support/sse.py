"""Reading a server-sent event stream as a client does (the WHATWG event-stream format)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

KEEP_ALIVE = "keep-alive"


@dataclass(frozen=True, slots=True)
class Message:
    event: str
    id: str
    data: Any
    """The ``data:`` field, parsed as JSON."""

    @property
    def version(self) -> int:
        return int(self.id.split(".")[0])

    @property
    def seq(self) -> int:
        return int(self.id.split(".")[1])


@dataclass(frozen=True, slots=True)
class Comment:
    text: str


class Parser:
    """Fed one line at a time (without its line ending); hands back what each completes."""

    def __init__(self) -> None:
        self._fields: dict[str, list[str]] = {}

    def feed(self, line: str) -> Message | Comment | None:
        if line.startswith(":"):
            return Comment(line[1:].strip())
        if line:
            name, _, value = line.partition(":")
            self._fields.setdefault(name, []).append(value[1:] if value[:1] == " " else value)
            return None
        fields, self._fields = self._fields, {}
        if not fields:
            return None
        data = "\n".join(fields.get("data", []))
        return Message(
            event=fields.get("event", ["message"])[-1],
            id=fields.get("id", [""])[-1],
            data=json.loads(data) if data else None,
        )


def parse(lines: Iterable[str]) -> Iterator[Message | Comment]:
    """Messages and comments, one at a time, as their blank line arrives."""
    parser = Parser()
    for line in lines:
        item = parser.feed(line)
        if item is not None:
            yield item


def messages(text: str) -> list[Message]:
    """Every message of a whole (ended) stream, comments left out."""
    return [item for item in parse(text.splitlines()) if isinstance(item, Message)]
