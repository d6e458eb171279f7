from __future__ import annotations

import pytest

from clustertasks.domain import timefmt

# 2020-11-10T08:02:04.5Z
INSTANT = 1_604_995_324_500_000


def test_rfc3339_utc_has_numeric_offset_and_whole_seconds() -> None:
    assert timefmt.rfc3339(INSTANT) == "2020-11-10T08:02:04+00:00"


def test_rfc3339_in_a_zone() -> None:
    assert timefmt.rfc3339(INSTANT, "Asia/Shanghai") == "2020-11-10T16:02:04+08:00"


def test_stage_time() -> None:
    assert timefmt.stage_time(INSTANT) == "2020-11-10 08:02:04"
    assert timefmt.stage_time(INSTANT, "Asia/Shanghai") == "2020-11-10 16:02:04"
    assert timefmt.stage_time(None) == ""


def test_epoch_ms_is_a_string_of_milliseconds() -> None:
    assert timefmt.epoch_ms(INSTANT) == "1604995324500"


def test_parse_rfc3339_round_trips() -> None:
    text = timefmt.rfc3339(INSTANT, "Asia/Shanghai")
    assert timefmt.parse_rfc3339(text) == INSTANT - 500_000
    with pytest.raises(ValueError, match="offset"):
        timefmt.parse_rfc3339("2020-11-10T16:02:04")
