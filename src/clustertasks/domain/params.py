"""Reading request documents: each helper names the field (dotted path) it rejects."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from clustertasks import errors

MAX_TEXT = 256


def obj(parent: Mapping[str, Any], key: str, path: str = "") -> Mapping[str, Any]:
    value = parent.get(key)
    name = f"{path}{key}"
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise errors.InvalidParameter(name, f"must be an object, got {_kind(value)}")
    return value


def text(
    parent: Mapping[str, Any],
    key: str,
    path: str = "",
    *,
    default: str = "",
    required: bool = False,
    max_length: int = MAX_TEXT,
) -> str:
    value = parent.get(key)
    name = f"{path}{key}"
    if value is None or value == "":
        if required:
            raise errors.InvalidParameter(name, "is required")
        return default
    if not isinstance(value, str):
        raise errors.InvalidParameter(name, f"must be a string, got {_kind(value)}")
    if len(value) > max_length or not value.isprintable():
        raise errors.InvalidParameter(name, f"must be at most {max_length} printable characters")
    return value


def integer(
    parent: Mapping[str, Any],
    key: str,
    path: str = "",
    *,
    default: int | None = None,
    low: int | None = None,
    high: int | None = None,
) -> int | None:
    value = parent.get(key)
    name = f"{path}{key}"
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        else:
            raise errors.InvalidParameter(name, f"must be an integer, got {value!r}")
    if low is not None and value < low:
        raise errors.InvalidParameter(name, f"must be at least {low}, got {value}")
    if high is not None and value > high:
        raise errors.InvalidParameter(name, f"must be at most {high}, got {value}")
    return int(value)


def number(
    parent: Mapping[str, Any],
    key: str,
    path: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
) -> float | None:
    """A JSON number (or a numeric string), finite and within bounds; None when absent."""
    value = parent.get(key)
    name = f"{path}{key}"
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise errors.InvalidParameter(name, f"must be a number, got {_kind(value)}")
    try:
        parsed = float(value)
    except ValueError:
        raise errors.InvalidParameter(name, f"must be a number, got {value!r}") from None
    if not math.isfinite(parsed):
        raise errors.InvalidParameter(name, f"must be a finite number, got {value!r}")
    if low is not None and parsed < low:
        raise errors.InvalidParameter(name, f"must be at least {low:g}, got {parsed:g}")
    if high is not None and parsed > high:
        raise errors.InvalidParameter(name, f"must be at most {high:g}, got {parsed:g}")
    return parsed


def only_keys(parent: Mapping[str, Any], allowed: Sequence[str], path: str = "") -> None:
    """Rejects a key not in ``allowed``, naming it (and what is allowed)."""
    for key in parent:
        if key not in allowed:
            raise errors.InvalidParameter(
                f"{path}{key}", f"is not a known field; use {', '.join(allowed)}"
            )


def boolean(parent: Mapping[str, Any], key: str, path: str = "", *, default: bool = False) -> bool:
    value = parent.get(key)
    name = f"{path}{key}"
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        # Query strings carry Python's True/False from the SDK.
        return value.lower() == "true"
    raise errors.InvalidParameter(name, f"must be true or false, got {value!r}")


def text_list(
    parent: Mapping[str, Any], key: str, path: str = "", *, max_items: int = 100
) -> list[str]:
    value = parent.get(key)
    name = f"{path}{key}"
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.InvalidParameter(name, f"must be a list, got {_kind(value)}")
    if len(value) > max_items:
        raise errors.InvalidParameter(name, f"must have at most {max_items} items")
    out: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item or len(item) > MAX_TEXT:
            raise errors.InvalidParameter(f"{name}[{index}]", "must be a non-empty string")
        out.append(item)
    return out


def object_list(
    parent: Mapping[str, Any], key: str, path: str = "", *, max_items: int = 100
) -> list[Mapping[str, Any]]:
    value = parent.get(key)
    name = f"{path}{key}"
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.InvalidParameter(name, f"must be a list, got {_kind(value)}")
    if len(value) > max_items:
        raise errors.InvalidParameter(name, f"must have at most {max_items} items")
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise errors.InvalidParameter(f"{name}[{index}]", "must be an object")
    return list(value)


def _kind(value: Any) -> str:
    return {list: "a list", dict: "an object", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
