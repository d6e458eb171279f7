"""SDK request models filled in every field, found by walking the model classes: a field
added to the SDK is filled (and so tested) without anyone listing it."""

from __future__ import annotations

import sys
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from darabonba.model import DaraModel


def fields(model: type[DaraModel]) -> dict[str, Any]:
    """The model's fields and their types, as its ``__init__`` declares them."""
    module = sys.modules[model.__module__]
    hints = typing.get_type_hints(model.__init__, globalns=vars(module))
    hints.pop("return", None)
    return hints


def filled(model: type[DaraModel], variant: int = 1, path: str = "") -> Any:
    """An instance of ``model`` with every field set to a value that names its path;
    ``variant`` changes every value (strings, numbers, booleans flip on odd/even)."""
    instance = model()
    for name, kind in fields(model).items():
        setattr(instance, name, _sample(kind, variant, f"{path}.{name}" if path else name))
    return instance


def _sample(kind: Any, variant: int, path: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is list:
        (item,) = typing.get_args(kind)
        return [_sample(item, variant, f"{path}[0]")]
    if origin is dict:
        return {f"key-{variant}": f"value-{variant}"}
    if kind is bool:
        return variant % 2 == 1
    if kind is int:
        return 10 + variant
    if kind is float:
        return 0.5 + variant
    if kind is str:
        leaf = path.rsplit(".", 1)[-1].replace("[0]", "")
        return f"{leaf}-{variant}"
    if isinstance(kind, type) and issubclass(kind, DaraModel):
        return filled(kind, variant, path)
    return f"{path}-{variant}"


def leaves(document: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of a JSON document as (dotted path, value); lists of objects are walked
    item by item, other lists and empty objects are leaves."""
    if isinstance(document, Mapping) and document:
        for key, value in document.items():
            yield from leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(document, list) and document and isinstance(document[0], Mapping):
        for index, item in enumerate(document):
            yield from leaves(item, f"{path}[{index}]")
    else:
        yield path, document


def at(document: Any, path: str) -> Any:
    """The value at a path :func:`leaves` gave (KeyError when it is not there)."""
    node = document
    for part in path.replace("[", ".[").split("."):
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    return node
