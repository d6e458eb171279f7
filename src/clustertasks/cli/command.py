"""What every client command shares: its options, the signed client they configure, how a
submitted task is shown and followed, and how errors become one line and an exit status.

A command is a plain function whose last parameter is ``session: Session``;
:func:`client_command` registers it with the shared options added (``--output``,
``--endpoint``, ``--access-key-id``, ``--access-key-secret``, ``--profile``, ``--ca-cert``,
``--verbose``),
so that every command takes them the same way.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console

from clustertasks import errors
from clustertasks.cli import client, config, output, views, watch

CONNECTION_PANEL = "Connection"

EndpointOption = Annotated[
    str | None,
    typer.Option(
        envvar="CLUSTERTASKS_ENDPOINT",
        help=f"URL of the server. Default: the profile's, else {config.DEFAULT_ENDPOINT}.",
        rich_help_panel=CONNECTION_PANEL,
        show_default=False,
    ),
]
AccessKeyIdOption = Annotated[
    str | None,
    typer.Option(
        envvar="CLUSTERTASKS_ACCESS_KEY_ID",
        help="AccessKey id to sign requests with. Default: the profile's; without one, the "
        f"key in ./{config.CREDENTIALS_FILE} (what serve saves) if that file exists.",
        rich_help_panel=CONNECTION_PANEL,
        show_default=False,
    ),
]
AccessKeySecretOption = Annotated[
    str | None,
    typer.Option(
        envvar="CLUSTERTASKS_ACCESS_KEY_SECRET",
        help="Its secret (prefer the variable or a profile: arguments show in ps).",
        rich_help_panel=CONNECTION_PANEL,
        show_default=False,
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        envvar="CLUSTERTASKS_PROFILE",
        help=f"Profile of 'clustertasks configure' to read. Default: {config.DEFAULT_PROFILE}.",
        rich_help_panel=CONNECTION_PANEL,
        show_default=False,
    ),
]
CaCertOption = Annotated[
    str | None,
    typer.Option(
        envvar="CLUSTERTASKS_CA_CERT",
        help="PEM file of the CA to trust for an https:// endpoint (see 'clustertasks tls "
        "init'). Default: the system's trust store.",
        rich_help_panel=CONNECTION_PANEL,
        show_default=False,
    ),
]
VerboseOption = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="On an error, show the traceback too."),
]
WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait",
        "-w",
        help="Follow the task until it ends; the exit status then says how it ended.",
    ),
]


@dataclass
class Session:
    """One client command's connection, output format and verbosity."""

    api: client.ApiClient
    output_format: str
    """``table``, ``json``, ``yaml`` (or ``xml`` where a command offers it)."""
    verbose: bool = False

    def emit(self, document: dict[str, Any], table: output.Renderer) -> None:
        output.emit(document, self.output_format, table)

    def submitted(
        self,
        body: dict[str, Any],
        wait: bool,
        stop_states: tuple[str, ...] = watch.STOP_STATES,
    ) -> None:
        """Show what a mutating request answered (its ids); with ``wait``, follow its task
        until one of ``stop_states`` and exit with the status that calls for."""
        task_id = str(body.get("task_id", ""))
        if not wait or not task_id:
            self.emit(body, views.print_submitted)
            return
        if self.output_format == output.Format.table:
            views.print_submitted(output.out, body)
            final = self._follow(task_id, output.out, stop_states)
        else:
            # The document goes to stdout for scripts; progress to stderr for people.
            final = self._follow(task_id, output.err, stop_states)
            self.emit({**body, "task": final}, views.print_submitted)
        raise typer.Exit(watch.exit_code(final))

    def follow(self, task_id: str) -> None:
        """``task watch``: follow a task to its end and exit with the matching status."""
        if self.output_format == output.Format.table:
            final = self._follow(task_id, output.out, watch.STOP_STATES)
        else:
            final = self._follow(task_id, output.err, watch.STOP_STATES)
            self.emit(final, views.print_task)
        raise typer.Exit(watch.exit_code(final))

    def _follow(
        self, task_id: str, console: Console, stop_states: tuple[str, ...]
    ) -> dict[str, Any]:
        try:
            return watch.follow(self.api, task_id, console, stop_states)
        except KeyboardInterrupt:
            output.err.print(
                f"\nStopped following {task_id}; the task goes on. "
                f"Follow it again with: clustertasks task watch {task_id}",
                highlight=False,
                markup=False,
            )
            raise typer.Exit(output.ExitCode.INTERRUPTED) from None


@contextlib.contextmanager
def guarded(verbose: bool) -> Iterator[None]:
    """Turn our errors into one line on stderr and exit status 4 (the traceback too with
    ``--verbose``). Exits a command asked for (typer.Exit) pass through."""
    try:
        yield
    except client.ApiError as exc:
        _report(exc, verbose, exc.code, exc.message, exc.request_id)
    except errors.ClustertasksError as exc:
        _report(exc, verbose, exc.code, exc.message)


def _report(
    exc: BaseException, verbose: bool, code: str, message: str, request_id: str = ""
) -> None:
    if verbose:
        output.err.print(
            "".join(traceback.format_exception(exc)).rstrip(), markup=False, highlight=False
        )
    output.print_error(code, message, request_id)
    raise typer.Exit(output.ExitCode.USAGE) from None


# -- registration ------------------------------------------------------------------------------

_COMMON = (
    "output",
    "endpoint",
    "access_key_id",
    "access_key_secret",
    "profile",
    "ca_cert",
    "verbose",
)


def client_command(
    app: typer.Typer, name: str, *, formats: type[enum.StrEnum] = output.Format
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register the decorated function as command ``name`` of ``app``, with the shared
    options in place of its ``session`` parameter."""

    def register(function: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(function, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "session"]
        shared = _shared_parameters(formats)

        def command(**values: Any) -> None:
            common = {key: values.pop(key) for key in _COMMON}
            with guarded(common["verbose"]):
                flags = config.ClientFlags(
                    endpoint=common["endpoint"],
                    access_key_id=common["access_key_id"],
                    access_key_secret=common["access_key_secret"],
                    profile=common["profile"],
                )
                settings = config.load(flags)
                signer = None
                if settings.access_key_id and settings.access_key_secret:
                    signer = client.SigningAuth(settings.access_key_id, settings.access_key_secret)
                with client.ApiClient(settings.endpoint, signer, ca_cert=common["ca_cert"]) as api:
                    session = Session(api, str(common["output"]), bool(common["verbose"]))
                    function(**values, session=session)

        command.__name__ = function.__name__
        command.__qualname__ = function.__qualname__
        command.__module__ = function.__module__
        command.__doc__ = function.__doc__
        command.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*own, *shared]
        )
        app.command(name)(command)
        return function

    return register


def _shared_parameters(formats: type[enum.StrEnum]) -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY
    choices = ", ".join(f.value for f in formats)
    output_option = Annotated[
        formats,  # type: ignore[valid-type]
        typer.Option(
            "--output", "-o", help=f"{choices}: tables for people, or the server's document."
        ),
    ]
    return [
        inspect.Parameter("output", keyword, default=formats("table"), annotation=output_option),
        inspect.Parameter("endpoint", keyword, default=None, annotation=EndpointOption),
        inspect.Parameter("access_key_id", keyword, default=None, annotation=AccessKeyIdOption),
        inspect.Parameter(
            "access_key_secret", keyword, default=None, annotation=AccessKeySecretOption
        ),
        inspect.Parameter("profile", keyword, default=None, annotation=ProfileOption),
        inspect.Parameter("ca_cert", keyword, default=None, annotation=CaCertOption),
        inspect.Parameter("verbose", keyword, default=False, annotation=VerboseOption),
    ]
