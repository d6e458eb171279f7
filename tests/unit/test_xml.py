from __future__ import annotations

from xml.etree import ElementTree

from clustertasks.api import xml


def test_maps_nest_lists_repeat_scalars_are_text() -> None:
    body = xml.render(
        "DescribeTaskInfoResponse",
        {
            "task_id": "T-1",
            "target": {"id": "c1", "type": "cluster"},
            "task_result": [
                {"data": "i-1", "status": "success"},
                {"data": "i-2", "status": "failed"},
            ],
            "events": [],
            "flag": True,
            "count": 3,
            "none": None,
        },
    )
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ElementTree.fromstring(body)
    assert root.tag == "DescribeTaskInfoResponse"
    assert root.findtext("task_id") == "T-1"
    assert root.findtext("target/type") == "cluster"
    assert [e.findtext("data") for e in root.findall("task_result")] == ["i-1", "i-2"]
    assert root.findall("events") == []
    assert root.findtext("flag") == "true"
    assert root.findtext("count") == "3"
    assert root.findtext("none") == ""


def test_keys_that_are_not_xml_names_and_illegal_characters_survive() -> None:
    body = xml.render(
        "R", {"parameters": {"1bad key": "x\x00y", "xmlish": "v", "ok": [[1, 2]], "<&>": "<&>"}}
    )
    root = ElementTree.fromstring(body)
    entries = {e.get("key"): e.text for e in root.findall("parameters/entry")}
    assert entries == {"1bad key": "xy", "xmlish": "v", "<&>": "<&>"}
    assert [i.text for i in root.findall("parameters/ok/item")] == ["1", "2"]
