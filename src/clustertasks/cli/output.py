"""Output formats of the client commands, exit statuses, and the one-line error."""

from __future__ import annotations

import enum
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import yaml
from rich.console import Console

out = Console()
err = Console(stderr=True)
PIPE_WIDTH = 160


class ExitCode(enum.IntEnum):
    """What a client command's exit status means; scripts may rely on these."""

    OK = 0
    """Done; with --wait or ``task watch``: the task succeeded."""
    FAILED = 1
    """The task failed (state ``fail``)."""
    CANCELED = 2
    """The task was canceled."""
    PAUSED = 3
    """The task paused (by request or by its pause_policy) and waits for ``task resume``."""
    USAGE = 4
    """Nothing was done: a usage or configuration error, an unreachable server, or a request
    the server refused (bad parameter, unknown resource, wrong AccessKey, conflict, ...)."""
    INTERRUPTED = 130
    """Ctrl-C while following a task: the task itself goes on."""


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


class TaskFormat(enum.StrEnum):
    """Task reads can also show the server's XML document."""

    table = "table"
    json = "json"
    yaml = "yaml"
    xml = "xml"


Renderer = Callable[[Console, dict[str, Any]], None]


def emit(document: dict[str, Any], output: str, table: Renderer) -> None:
    """Print ``document`` as JSON or YAML (the ACK keys as the server sent them), or as
    tables with ``table``."""
    if output == "json":
        print_json(document)
    elif output == "yaml":
        print_yaml(document)
    else:
        table(table_console(), document)


def table_console() -> Console:
    """Where tables go: the terminal, at its width; a pipe or a file gets 160 columns rather
    than the 80 Rich assumes there, unless COLUMNS says otherwise."""
    if out.is_terminal or os.environ.get("COLUMNS"):
        return out
    return Console(width=PIPE_WIDTH)


def print_json(document: object) -> None:
    # Not through Rich: machine-readable output must not be wrapped or styled.
    print_text(json.dumps(document, indent=2, ensure_ascii=False))


def print_yaml(document: object) -> None:
    print_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def print_text(text: str) -> None:
    sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()


def error_line(code: str, message: str, request_id: str = "") -> str:
    """``Error: <Code>: <message> (request id …)``, on one line whatever the message."""
    text = " ".join(message.split())
    line = f"Error: {code}: {text}" if code else f"Error: {text}"
    return f"{line} (request id {request_id})" if request_id else line


def print_error(code: str, message: str, request_id: str = "") -> None:
    # soft_wrap: the line stays one line, whatever the terminal's width.
    err.print(error_line(code, message, request_id), markup=False, highlight=False, soft_wrap=True)
