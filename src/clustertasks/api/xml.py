"""The XML form of a response document, as ACK renders it.

The root element is named after the operation (``<DescribeTaskInfoResponse>``); a map
becomes nested elements; a list becomes the same element repeated once per item.
Keys that are not XML names (possible inside free maps such as ``parameters``) become
``<entry key="…">`` so that nothing is lost or mangled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")
# Characters XML 1.0 cannot carry at all, even escaped.
_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def render(root: str, document: Mapping[str, Any]) -> bytes:
    element = ElementTree.Element(root)
    _fill(element, document)
    body: bytes = ElementTree.tostring(element, encoding="utf-8", xml_declaration=False)
    return DECLARATION + body


def _fill(parent: ElementTree.Element, mapping: Mapping[str, Any]) -> None:
    for key, value in mapping.items():
        _append(parent, str(key), value)


def _append(parent: ElementTree.Element, key: str, value: Any) -> None:
    if isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, list | tuple):
                child = _child(parent, key)
                for inner in item:
                    _append(child, "item", inner)
            else:
                _append(parent, key, item)
        return
    child = _child(parent, key)
    if isinstance(value, Mapping):
        _fill(child, value)
    else:
        child.text = _scalar(value)


def _child(parent: ElementTree.Element, key: str) -> ElementTree.Element:
    if _NAME.fullmatch(key) and not key.lower().startswith("xml"):
        return ElementTree.SubElement(parent, key)
    return ElementTree.SubElement(parent, "entry", {"key": _ILLEGAL.sub("", key)})


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _ILLEGAL.sub("", str(value))
