"""Log records that say which request, task and stage they belong to.

The API middleware binds ``request_id`` and the AccessKey id, the engine binds ``task_id``
and ``stage``; every record logged meanwhile carries them (context variables follow asyncio
tasks and the worker threads Starlette starts). ``--log-format json`` writes one JSON object
per line; ``text`` (the default) appends the bound fields to uvicorn's usual line.

Secrets never reach a record from here: only the fields in ``FIELDS`` are bound, and the
AccessKey *id* is one of them, never its secret.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
from collections.abc import Iterator
from typing import Any

from clustertasks import errors, settings

FIELDS = ("request_id", "access_key_id", "task_id", "stage")
"""What a record may carry beyond its message; each is an id, never a secret."""

_CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "clustertasks_log_context", default=None
)


def current() -> dict[str, str]:
    """The fields bound here and now (do not change the mapping returned)."""
    return _CONTEXT.get() or {}


@contextlib.contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Records logged inside carry ``fields`` (a None value unbinds that field)."""
    token = enter(**fields)
    try:
        yield
    finally:
        leave(token)


Bound = contextvars.Token[dict[str, str] | None]


def enter(**fields: str | None) -> Bound:
    """``bound`` without a ``with`` block: records carry ``fields`` until ``leave``."""
    return _CONTEXT.set(_merged(fields))


def enter_request(request_id: str) -> Bound:
    """``enter(request_id=request_id)`` with every other field unbound, as a request's
    first binding is (the API's hot read makes one per request)."""
    return _CONTEXT.set({"request_id": request_id})


def leave(token: Bound) -> None:
    """End what ``enter`` began (in the same context)."""
    _CONTEXT.reset(token)


def bind(**fields: str | None) -> None:
    """Bind ``fields`` until the enclosing :func:`bound` block ends."""
    _CONTEXT.set(_merged(fields))


_KNOWN = frozenset(FIELDS)


def _merged(fields: dict[str, str | None]) -> dict[str, str]:
    if not _KNOWN.issuperset(fields):
        unknown = set(fields) - _KNOWN
        raise ValueError(f"not a log field: {', '.join(sorted(unknown))}")
    merged = dict(current())
    for name, value in fields.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (``record.context``, and one attribute each)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current()
        record.context = context
        for name in FIELDS:
            setattr(record, name, context.get(name, ""))
        record.context_text = "".join(f" {name}={value}" for name, value in context.items())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the bound fields, and the
    exception's text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update(getattr(record, "context", None) or current())
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def config(log_format: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document for uvicorn's loggers and ours."""
    if log_format not in settings.LOG_FORMATS:
        raise errors.ConfigurationError(
            f"log format must be one of {', '.join(settings.LOG_FORMATS)}, got {log_format!r}"
        )
    level = level.upper()
    if log_format == "json":
        formatter: dict[str, Any] = {"()": JsonFormatter}
    else:
        formatter = {
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s%(context_text)s",
        }
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "filters": ["context"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            # Access lines duplicate what the metrics and traces say; debug shows them.
            "uvicorn.access": {
                "handlers": ["default"],
                "level": "INFO" if level == "DEBUG" else "WARNING",
                "propagate": False,
            },
            "clustertasks": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }
