"""``clustertasks audit list``: who changed what, read directly from the database."""

from __future__ import annotations

import enum
import json
import re
import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from clustertasks import errors, settings
from clustertasks.domain import timefmt

app = typer.Typer(help="The audit log of mutating requests.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

EXIT_FAILED = 1
EXIT_USAGE = 4
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class AuditOutput(enum.StrEnum):
    table = "table"
    json = "json"


@app.command("list")
def list_entries(
    since: Annotated[
        str | None,
        typer.Option(help="Only entries since then: RFC 3339, or an age like 30m, 2h, 7d."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 1000,
    db: Annotated[
        str,
        typer.Option("--db", envvar="CLUSTERTASKS_DB_URL", help="Database URL."),
    ] = settings.DEFAULT_DB_URL,
    output: Annotated[
        AuditOutput, typer.Option("--output", "-o", help="table, or json for scripts.")
    ] = AuditOutput.table,
) -> None:
    """List mutating requests, oldest first: time, key, action, target, request id, outcome."""
    from clustertasks import admin  # here: the client commands start faster without it

    try:
        since_us = _since(since)
        config = settings.Settings(storage=settings.StorageSettings(url=db))
        with admin.audit_entries_for(config, since_us, limit) as entries:
            rows = [
                {
                    "time": timefmt.rfc3339(e.time_us, "UTC"),
                    "access_key_id": e.access_key_id,
                    "action": e.action,
                    "method": e.method,
                    "target": e.target,
                    "request_id": e.request_id,
                    "status": e.status,
                    "outcome": e.outcome or "success",
                }
                for e in entries
            ]
    except errors.ConfigurationError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    except errors.ClustertasksError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    if output is AuditOutput.json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    table = Table("time", "AccessKey id", "action", "target", "status", "outcome", "request id")
    for row in rows:
        table.add_row(
            str(row["time"]),
            str(row["access_key_id"]),
            str(row["action"]),
            f"{row['method']} {row['target']}",
            str(row["status"]),
            str(row["outcome"]),
            str(row["request_id"]),
        )
    out.print(table)


def _since(value: str | None) -> int:
    if not value:
        return 0
    relative = re.fullmatch(r"(\d{1,9})([smhd])", value.strip())
    if relative:
        seconds = int(relative.group(1)) * _UNITS[relative.group(2)]
        return (time.time_ns() // 1_000) - seconds * 1_000_000
    try:
        return timefmt.parse_rfc3339(value)
    except ValueError:
        raise errors.ConfigurationError(
            f"--since {value!r} is neither RFC 3339 nor an age like 30m, 2h or 7d"
        ) from None
