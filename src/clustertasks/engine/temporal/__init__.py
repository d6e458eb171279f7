"""The Temporal executor: one workflow per task, one activity per stage.

Only this package imports ``temporalio`` (an import-linter contract says so). The task store
stays the one read model: activities write every stage, event and result to it exactly as the
local executor does, and nothing reads a task back from Temporal.
"""
