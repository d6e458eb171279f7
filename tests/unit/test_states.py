from __future__ import annotations

import itertools

import pytest

from clustertasks import errors
from clustertasks.domain import states

T = states.TaskState
S = states.StageState

LEGAL_TASK = {
    (T.RUNNING, T.PAUSED),
    (T.RUNNING, T.SUCCESS),
    (T.RUNNING, T.FAIL),
    (T.RUNNING, T.CANCELED),
    (T.PAUSED, T.RUNNING),
    (T.PAUSED, T.CANCELED),
    (T.PAUSED, T.FAIL),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(T, T)))
def test_task_transition_table(current: states.TaskState, target: states.TaskState) -> None:
    if (current, target) in LEGAL_TASK:
        states.check_task_transition("T-1", current, target)
    else:
        with pytest.raises(errors.IllegalTransition) as caught:
            states.check_task_transition("T-1", current, target)
        assert caught.value.code == "ErrorTaskState"
        assert current.value in caught.value.message
        assert "T-1" in caught.value.message


def test_terminal_task_states_are_exactly_success_fail_canceled() -> None:
    assert {s for s in T if s.terminal} == {T.SUCCESS, T.FAIL, T.CANCELED}
    for state in T:
        assert (not states.TASK_TRANSITIONS[state]) == state.terminal


def test_wire_spellings() -> None:
    assert [s.value for s in T] == ["running", "paused", "success", "fail", "canceled"]
    assert [s.value for s in S] == ["pending", "running", "success", "fail", "skipped", "canceled"]
    assert [s.value for s in states.ResultStatus] == ["initial", "success", "failed"]
    assert [s.value for s in states.EventLevel] == ["Normal", "Warning"]


LEGAL_STAGE = {
    (S.PENDING, S.RUNNING),
    (S.PENDING, S.SKIPPED),
    (S.PENDING, S.CANCELED),
    (S.RUNNING, S.SUCCESS),
    (S.RUNNING, S.FAIL),
    (S.RUNNING, S.CANCELED),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_stage_transition_table(current: states.StageState, target: states.StageState) -> None:
    if (current, target) in LEGAL_STAGE:
        states.check_stage_transition("T-1", "Drain", current, target)
    else:
        with pytest.raises(errors.IllegalTransition):
            states.check_stage_transition("T-1", "Drain", current, target)


def test_result_status_never_goes_back_from_success() -> None:
    R = states.ResultStatus
    states.check_result_transition("T-1", "i-1", R.INITIAL, R.SUCCESS)
    states.check_result_transition("T-1", "i-1", R.FAILED, R.SUCCESS)
    states.check_result_transition("T-1", "i-1", R.SUCCESS, R.SUCCESS)
    with pytest.raises(errors.IllegalTransition):
        states.check_result_transition("T-1", "i-1", R.SUCCESS, R.FAILED)
    with pytest.raises(errors.IllegalTransition):
        states.check_result_transition("T-1", "i-1", R.SUCCESS, R.INITIAL)
