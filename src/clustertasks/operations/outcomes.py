"""Per-node outcomes of node operations: running nodes side by side, remembering which
failed and why, and turning those failures into the task's error.

Failures are kept in a stage's ``outputs`` as ``{resource: {"code", "message"}}`` so that
a later stage (``Finish``) or a re-run after a crash sees them; the error raised from them
keeps the code of the node's own failure (``DrainTimeout``, ``NodeUpgradeFailed`` …).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

from clustertasks import errors

Failures = dict[str, dict[str, str]]


async def run_all(steps: Iterable[Awaitable[None]]) -> None:
    """Run the steps side by side and wait for every one of them, then re-raise the first
    error. Unlike a bare ``gather`` nothing is left running in the background when one
    step is interrupted by a pause or cancel (the others reach their own checkpoint)."""
    outcomes = await asyncio.gather(*steps, return_exceptions=True)
    raised = [o for o in outcomes if isinstance(o, BaseException)]
    # The engine's pause and cancel signals are not ours: they go first, so that a pause
    # is honoured rather than retried as if a step had failed.
    for exc in sorted(raised, key=lambda e: isinstance(e, errors.ClustertasksError)):
        raise exc


def stored(outputs: Mapping[str, Any], key: str = "failures") -> Failures:
    found: Any = outputs.get(key) or {}
    return {
        str(k): {"code": str(v["code"]), "message": str(v["message"])} for k, v in found.items()
    }


def record(failures: Failures, resource: str, exc: errors.ClustertasksError) -> None:
    failures[resource] = {"code": exc.code, "message": exc.message}


def rebuild(code: str, message: str) -> errors.PermanentError:
    """The error a stored failure stands for, with its own code (an injected fault's code
    too), and never retried."""
    return errors.permanent(code, message)


def error(failures: Failures, what: str) -> errors.PermanentError:
    """The task's error: the one failure itself, or the first one's code with every
    failed resource named."""
    items = list(failures.items())
    code, message = items[0][1]["code"], items[0][1]["message"]
    if len(items) == 1:
        return rebuild(code, message)
    listed = "; ".join(f"{item['code']}: {item['message']}" for _, item in items)
    return rebuild(code, f"{len(items)} {what} failed: {listed}")
