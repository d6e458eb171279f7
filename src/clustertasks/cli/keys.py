"""``clustertasks keys``: AccessKeys, managed directly on the database like ``db migrate``.

The client commands find the key they sign with in ``cli/config.py``.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from clustertasks import errors, settings
from clustertasks.domain import access, timefmt

app = typer.Typer(
    help="Create, list, disable and delete AccessKeys (works on the database directly).",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)

EXIT_FAILED = 1
EXIT_USAGE = 4

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="CLUSTERTASKS_DB_URL",
        help="Database URL: sqlite:///path or postgresql://user:pass@host:port/db.",
    ),
]


class AuthMode(enum.StrEnum):
    on = "on"
    off = "off"


class KeyOutput(enum.StrEnum):
    table = "table"
    json = "json"


OutputOption = Annotated[
    KeyOutput, typer.Option("--output", "-o", help="table, or json for scripts.")
]


@app.command("create")
def create(
    role: Annotated[access.Role, typer.Option(help="admin, operator or readonly.")],
    name: Annotated[str, typer.Option(help="A note saying whose key this is.")] = "",
    db: DbOption = settings.DEFAULT_DB_URL,
    output: OutputOption = KeyOutput.table,
) -> None:
    """Create a key and print its id and secret; the secret is shown this once only."""

    def run(admin: Any) -> None:
        key: access.AccessKey = admin.create(role, name)
        document = {
            "access_key_id": key.access_key_id,
            "access_key_secret": key.secret,
            "role": key.role.value,
            "name": key.name,
        }
        if output is KeyOutput.json:
            _print_json(document)
            return
        out.print(f"access_key_id      {key.access_key_id}", highlight=False)
        out.print(f"access_key_secret  {key.secret}", highlight=False)
        out.print(f"role               {key.role.value}", highlight=False)
        err.print("Save the secret now: it is not shown again.", highlight=False)

    _with_admin(db, run)


@app.command("list")
def list_keys(
    db: DbOption = settings.DEFAULT_DB_URL, output: OutputOption = KeyOutput.table
) -> None:
    """List the keys (never their secrets)."""

    def run(admin: Any) -> None:
        found: list[access.AccessKey] = list(admin.keys())
        rows = [
            {
                "access_key_id": key.access_key_id,
                "role": key.role.value,
                "name": key.name,
                "status": key.status.value,
                "created": timefmt.rfc3339(key.created_us, "UTC"),
            }
            for key in found
        ]
        if output is KeyOutput.json:
            _print_json(rows)
            return
        table = Table()
        # The id is what one copies: never cut it short, let the others give way.
        table.add_column("AccessKey id", no_wrap=True, min_width=access.KEY_ID_LENGTH)
        table.add_column("role", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("name", overflow="fold")
        table.add_column("created", overflow="fold")
        for row in rows:
            table.add_row(
                row["access_key_id"], row["role"], row["status"], row["name"], row["created"]
            )
        out.print(table)

    _with_admin(db, run)


@app.command("disable")
def disable(
    access_key_id: Annotated[str, typer.Argument(help="The key to disable.")],
    db: DbOption = settings.DEFAULT_DB_URL,
) -> None:
    """Disable a key: its requests get InvalidAccessKeyId.Inactive until it is enabled."""
    _with_admin(db, lambda admin: admin.disable(access_key_id))
    err.print(f"AccessKey {access_key_id} disabled", highlight=False)


@app.command("enable")
def enable(
    access_key_id: Annotated[str, typer.Argument(help="The key to enable.")],
    db: DbOption = settings.DEFAULT_DB_URL,
) -> None:
    """Enable a disabled key again."""
    _with_admin(db, lambda admin: admin.enable(access_key_id))
    err.print(f"AccessKey {access_key_id} enabled", highlight=False)


@app.command("delete")
def delete(
    access_key_id: Annotated[str, typer.Argument(help="The key to delete.")],
    db: DbOption = settings.DEFAULT_DB_URL,
) -> None:
    """Delete a key for good: its requests get InvalidAccessKeyId.NotFound."""
    _with_admin(db, lambda admin: admin.delete(access_key_id))
    err.print(f"AccessKey {access_key_id} deleted", highlight=False)


def _with_admin(db: str, action: Callable[[Any], None]) -> None:
    from clustertasks import admin  # here: the client commands start faster without it

    try:
        config = settings.Settings(storage=settings.StorageSettings(url=db))
        with admin.key_admin_for(config) as key_admin:
            action(key_admin)
    except errors.ConfigurationError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    except errors.ClustertasksError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None


def _print_json(document: object) -> None:
    # Not through Rich: machine-readable output must not be wrapped or styled.
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()
