"""Where the client commands find their server and their AccessKey, and ``clustertasks
configure``, which saves them in a profile.

Each setting is taken from the first of: its flag, its ``CLUSTERTASKS_*`` variable, the
profile, the default. The profile file is ``$XDG_CONFIG_HOME/clustertasks/config.toml``
(``~/.config/clustertasks/config.toml`` when the variable is unset), one table per profile::

    [default]
    endpoint = "http://127.0.0.1:8080"
    access_key_id = "..."
    access_key_secret = "..."

When no AccessKey id or secret comes from any of those, the credentials file a local
``clustertasks serve`` writes (``./clustertasks.credentials``) is used if it exists.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from clustertasks import errors
from clustertasks.cli import output

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
DEFAULT_PROFILE = "default"
CREDENTIALS_FILE = "clustertasks.credentials"
"""Written by ``serve`` next to where it runs when it makes the first AccessKey."""
PROFILE_KEYS = ("endpoint", "access_key_id", "access_key_secret")
_PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class ClientFlags:
    """What the command line (a flag, or its variable) said; None where it said nothing."""

    endpoint: str | None = None
    access_key_id: str | None = None
    access_key_secret: str | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class ClientConfig:
    endpoint: str
    """Base URL of the server, with its scheme."""
    access_key_id: str | None
    """None, with the secret None too: requests go unsigned."""
    access_key_secret: str | None
    profile: str
    """The profile that was read (it may not exist)."""


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The profile file, under ``XDG_CONFIG_HOME`` when it is set to an absolute path."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "clustertasks" / "config.toml"


def check_profile_name(name: str) -> str:
    if not _PROFILE_NAME.fullmatch(name):
        raise errors.ConfigurationError(
            f"profile name {name!r} must be 1-64 letters, digits, '-' or '_'"
        )
    return name


def normalise_endpoint(value: str) -> str:
    """``host:port`` becomes ``http://host:port``; only http and https are accepted."""
    endpoint = value.strip()
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    try:
        parts = urllib.parse.urlsplit(endpoint)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise errors.ConfigurationError(
            f"endpoint {value!r} must look like http://HOST:PORT or https://HOST"
        )
    return endpoint.rstrip("/")


def resolve(
    flags: ClientFlags,
    profiles: Mapping[str, Mapping[str, str]],
    saved_key: tuple[str, str] | None = None,
) -> ClientConfig:
    """Settings by precedence: flag or variable (``flags``), then the profile, then the
    default; ``saved_key`` (the credentials file) only when no key id or secret came from
    anywhere else."""
    name = check_profile_name(flags.profile or DEFAULT_PROFILE)
    if flags.profile and name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise errors.ConfigurationError(
            f"no profile {name!r} in the configuration (profiles: {known}); "
            f"create it with: clustertasks configure --profile {name}"
        )
    profile = profiles.get(name, {})
    endpoint = flags.endpoint or profile.get("endpoint") or DEFAULT_ENDPOINT
    key_id = flags.access_key_id or profile.get("access_key_id") or None
    secret = flags.access_key_secret or profile.get("access_key_secret") or None
    if key_id is None and secret is None and saved_key is not None:
        key_id, secret = saved_key
    if (key_id is None) != (secret is None):
        missing = "--access-key-secret" if secret is None else "--access-key-id"
        raise errors.ConfigurationError(
            f"an AccessKey needs both its id and its secret: {missing} is not set by a flag, "
            f"a CLUSTERTASKS_* variable or profile {name!r}"
        )
    return ClientConfig(normalise_endpoint(endpoint), key_id, secret, name)


def load(flags: ClientFlags, path: Path | None = None, cwd: Path | None = None) -> ClientConfig:
    """``resolve`` with the profile file and the credentials file read from disk."""
    profiles = read_profiles(path or config_path())
    credentials = (cwd or Path.cwd()) / CREDENTIALS_FILE
    return resolve(flags, profiles, read_credentials_file(credentials))


def read_credentials_file(path: Path) -> tuple[str, str] | None:
    """The key in a credentials file ``serve`` wrote; None when there is no such file."""
    try:
        with path.open(encoding="utf-8") as file:
            saved = json.load(file)
        return str(saved["access_key_id"]), str(saved["access_key_secret"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise errors.ConfigurationError(f"cannot read {path}: {exc}") from None


def read_profiles(path: Path) -> dict[str, dict[str, str]]:
    """Every profile in the file; none when the file does not exist."""
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise errors.ConfigurationError(f"cannot read {path}: {exc}") from None
    profiles: dict[str, dict[str, str]] = {}
    for name, table in document.items():
        if not isinstance(table, dict):
            raise errors.ConfigurationError(f"{path}: {name} must be a [table] of settings")
        for key, value in table.items():
            if not isinstance(value, str):
                raise errors.ConfigurationError(f"{path}: {name}.{key} must be a string")
        profiles[name] = dict(table)
    return profiles


def render_profiles(profiles: Mapping[str, Mapping[str, str]]) -> str:
    """The TOML text of ``profiles``: one table each, string values only."""
    sections = []
    for name, values in profiles.items():
        lines = [f"[{_toml_key(name)}]"]
        lines += [f"{_toml_key(key)} = {_toml_string(value)}" for key, value in values.items()]
        sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)


def write_profile(path: Path, name: str, values: Mapping[str, str]) -> None:
    """Set ``values`` in profile ``name``, keeping the other profiles and settings.

    The file is replaced whole, readable by its owner only (it holds secrets): written to a
    0600 file beside it, then renamed over it, so no reader ever sees half of it.
    """
    profiles = read_profiles(path)
    profiles[check_profile_name(name)] = {**profiles.get(name, {}), **values}
    text = render_profiles(profiles)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkstemp creates the file 0600: there is no moment where others can read it.
        fd, temporary = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise errors.ConfigurationError(f"cannot write {path}: {exc}") from None


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


_TOML_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(value: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped."""
    escaped = []
    for char in value:
        if char in _TOML_ESCAPES:
            escaped.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


# -- clustertasks configure --------------------------------------------------------------------


def configure(
    profile: Annotated[
        str,
        typer.Option(envvar="CLUSTERTASKS_PROFILE", help="The profile to create or change."),
    ] = DEFAULT_PROFILE,
    endpoint: Annotated[
        str | None, typer.Option(help="URL of the server, e.g. http://127.0.0.1:8080.")
    ] = None,
    access_key_id: Annotated[str | None, typer.Option(help="AccessKey id.")] = None,
    access_key_secret: Annotated[
        str | None,
        typer.Option(help="AccessKey secret (prefer the prompt: arguments show in ps)."),
    ] = None,
) -> None:
    """Save the server and AccessKey the client commands use, in a profile.

    With none of --endpoint, --access-key-id, --access-key-secret it asks for each (Enter
    keeps the value shown); with any of them it sets just those and asks nothing. The file,
    $XDG_CONFIG_HOME/clustertasks/config.toml (else ~/.config/clustertasks/config.toml), is
    readable by its owner only.
    """
    path = config_path()
    try:
        check_profile_name(profile)
        current = read_profiles(path).get(profile, {})
        given = {
            "endpoint": endpoint,
            "access_key_id": access_key_id,
            "access_key_secret": access_key_secret,
        }
        if all(value is None for value in given.values()):
            given = _ask(current)
        values = {key: value for key, value in given.items() if value is not None}
        if "endpoint" in values:
            values["endpoint"] = normalise_endpoint(values["endpoint"])
        write_profile(path, profile, values)
    except errors.ConfigurationError as exc:
        output.print_error(exc.code, exc.message)
        raise typer.Exit(output.ExitCode.USAGE) from None
    output.err.print(
        f"Saved profile {profile!r} to {path} (readable by you only).",
        highlight=False,
        markup=False,
    )


def _ask(current: Mapping[str, str]) -> dict[str, str | None]:
    endpoint: str = typer.prompt("Endpoint", default=current.get("endpoint", DEFAULT_ENDPOINT))
    saved_id = current.get("access_key_id", "")
    key_id: str = typer.prompt("AccessKey id", default=saved_id, show_default=bool(saved_id))
    shown = " (Enter keeps the saved one)" if current.get("access_key_secret") else ""
    secret: str = typer.prompt(
        f"AccessKey secret{shown}", default="", hide_input=True, show_default=False
    )
    return {
        "endpoint": endpoint,
        "access_key_id": key_id or None,
        "access_key_secret": secret or None,
    }
