"""The one error tree.

Every error clustertasks raises derives from :class:`ClustertasksError` and carries a
stable ``code``: the ACK error code it becomes on the wire. The class docstring is the
default message. The API maps classes to HTTP statuses in one table
(``clustertasks.api.errors``); nothing else decides a status.
"""

from __future__ import annotations


class ClustertasksError(Exception):
    """An internal error occurred."""

    code: str = "InternalError"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        super().__init__(self.message)


# --- request errors: the client must change the request -----------------------------------


class InvalidParameter(ClustertasksError):
    """A request parameter is invalid."""

    code = "InvalidParameter"

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"The parameter {field} is invalid: {problem}")


class ClusterNameTaken(InvalidParameter):
    """Another cluster has this name."""

    code = "ErrorClusterNameAlreadyExist"

    def __init__(self, name: str, owner: str) -> None:
        super().__init__("cluster_name", f"the name {name} is taken by cluster {owner}")


class ApiNotFound(ClustertasksError):
    """The specified API does not exist."""

    code = "InvalidApi.NotFound"


class MethodNotAllowed(ClustertasksError):
    """The HTTP method is not supported for this path."""

    code = "UnsupportedHTTPMethod"


# --- missing resources ----------------------------------------------------------------------


class NotFound(ClustertasksError):
    """The resource was not found."""

    code = "NotFound"


class TaskNotFound(NotFound):
    """The task was not found."""

    code = "ErrorTaskNotFound"

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"the task {task_id} not found")


class FaultNotFound(NotFound):
    """The fault rule was not found."""

    code = "ErrorFaultNotFound"

    def __init__(self, fault_id: str) -> None:
        self.fault_id = fault_id
        super().__init__(f"the fault rule {fault_id} not found")


class ClusterNotFound(NotFound):
    """The cluster was not found."""

    code = "ErrorClusterNotFound"

    def __init__(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        super().__init__(f"the cluster {cluster_id} not found")


# --- state conflicts ------------------------------------------------------------------------


class Conflict(ClustertasksError):
    """The request conflicts with the current state."""

    code = "Conflict"


class IllegalTransition(Conflict):
    """The task cannot move to the requested state."""

    code = "ErrorTaskState"

    def __init__(self, task_id: str, current: str, target: str) -> None:
        self.task_id = task_id
        self.current = current
        self.target = target
        super().__init__(f"the task {task_id} is {current} and cannot become {target}")


class TaskConflict(Conflict):
    """Another task is running on the same target."""

    code = "ErrorTaskConflict"


class IdempotentParameterMismatch(Conflict):
    """The client token was used before with different parameters."""

    code = "IdempotentParameterMismatch"


class TaskNotSupported(ClustertasksError):
    """The task does not support this action."""

    code = "ErrorTaskNotSupported"


class ClockNotManual(Conflict):
    """The simulated clock is not in manual mode: only a manual clock is advanced by hand."""

    code = "IncorrectClockMode"


class ExecutorLocked(ClustertasksError):
    """Another executor already runs tasks on this database."""

    code = "ExecutorLocked"


class RowConflict(Conflict):
    """The request conflicts with a concurrent change to the same resource; try again."""

    code = "Conflict"


class DuplicateTask(Conflict):
    """A task with this id already exists."""

    code = "ErrorTaskExists"


# --- infrastructure -------------------------------------------------------------------------


class StorageUnavailable(ClustertasksError):
    """The task store is unavailable; try again shortly."""

    code = "ServiceUnavailable"


class Busy(ClustertasksError):
    """The server follows as many tasks as it can at once; try again shortly."""

    code = "ServiceUnavailable"


class StorageError(ClustertasksError):
    """The task store failed to complete the operation."""

    code = "InternalError"


class ConfigurationError(ClustertasksError):
    """The configuration is invalid."""

    code = "InvalidConfiguration"


# --- operation outcomes: how a stage failure is retried -------------------------------------


class PermanentError(ClustertasksError):
    """The operation failed and retrying will not help."""

    code = "OperationFailed"


class TemporaryError(ClustertasksError):
    """The operation failed for now; it may succeed if retried."""

    code = "TemporarilyUnavailable"

    def __init__(self, message: str | None = None, *, delay: float | None = None) -> None:
        self.delay = delay
        super().__init__(message)


class StageTimeout(PermanentError):
    """A stage ran past its timeout."""

    code = "StageTimeout"

    def __init__(self, stage: str, seconds: float) -> None:
        self.stage = stage
        self.seconds = seconds
        super().__init__(f"stage {stage} did not finish within {seconds:g}s")


class NodePoolNotFound(NotFound):
    """The node pool was not found."""

    code = "ErrorNodePoolNotFound"

    def __init__(self, nodepool_id: str, cluster_id: str) -> None:
        self.nodepool_id = nodepool_id
        self.cluster_id = cluster_id
        super().__init__(f"the node pool {nodepool_id} not found in cluster {cluster_id}")


class QuotaExceeded(ClustertasksError):
    """A quota would be exceeded."""

    code = "QuotaExceeded.Node"


class InstanceCreateFailed(PermanentError):
    """No ECS instance could be created."""

    code = "InstanceCreateFailed"


class NoStock(InstanceCreateFailed):
    """The instance type is out of stock in the zone (ECS ``RunInstances``' refusal)."""

    code = "OperationDenied.NoStock"


class InstanceBootFailed(PermanentError):
    """An ECS instance failed to start."""

    code = "InstanceBootFailed"


class NodeJoinFailed(PermanentError):
    """A node failed to join the cluster."""

    code = "NodeJoinFailed"


class ResourceInUse(ClustertasksError):
    """The resource still has dependents."""

    code = "DependencyResourceExist"


class ClusterStateError(ClustertasksError):
    """The cluster's state does not allow this operation."""

    code = "ErrorClusterState"


# --- authentication, authorization and abuse resistance (gateway codes) --------------------


class AuthenticationError(ClustertasksError):
    """The request could not be authenticated."""

    code = "IncompleteSignature"


class IncompleteSignature(AuthenticationError):
    """The request signature is missing or malformed."""

    code = "IncompleteSignature"


class InvalidSignatureMethod(AuthenticationError):
    """The signature method is not supported."""

    code = "InvalidSignatureMethod"


class SignatureDoesNotMatch(AuthenticationError):
    """Specified signature is not matched with our calculation."""

    code = "SignatureDoesNotMatch"


class AccessKeyNotFound(AuthenticationError):
    """Specified access key is not found."""

    code = "InvalidAccessKeyId.NotFound"


class AccessKeyInactive(AuthenticationError):
    """Specified access key is disabled."""

    code = "InvalidAccessKeyId.Inactive"


class InvalidTimeStampFormat(AuthenticationError):
    """The request date is malformed."""

    code = "InvalidTimeStamp.Format"


class TimeStampExpired(AuthenticationError):
    """The request date is more than 15 minutes away from the server time."""

    code = "InvalidTimeStamp.Expired"


class SignatureNonceUsed(AuthenticationError):
    """The signature nonce has been used before."""

    code = "SignatureNonceUsed"


class SignInFailed(AuthenticationError):
    """The AccessKey ID or secret is not right, or the key is disabled."""

    code = "InvalidAccessKeyIdOrSecret"


class SignInRequired(AuthenticationError):
    """Sign in to the console first: there is no session, or it has ended."""

    code = "SignInRequired"


class CsrfTokenInvalid(ClustertasksError):
    """The form's CSRF token is missing or does not belong to this session: reload the page."""

    code = "Forbidden.CsrfToken"


class Forbidden(ClustertasksError):
    """The access key is not allowed to perform this action."""

    code = "Forbidden.RAM"

    def __init__(self, action: str, access_key_id: str, role: str) -> None:
        self.action = action
        super().__init__(
            f"User not authorized to operate on the specified resource: the access key "
            f"{access_key_id} has role {role}, which does not allow {action}."
        )


class Throttled(ClustertasksError):
    """Request was denied due to user flow control."""

    code = "Throttling.User"

    def __init__(self, retry_after_ms: int) -> None:
        self.retry_after_ms = retry_after_ms
        super().__init__(
            f"Request was denied due to user flow control; retry after {retry_after_ms} ms."
        )


class TooManyWaits(Throttled):
    """The AccessKey has as many long-polls and event streams open as it may."""

    def __init__(self, access_key_id: str, limit: int, retry_after_ms: int) -> None:
        super().__init__(retry_after_ms)
        self.message = (
            f"the AccessKey {access_key_id} has {limit} long-polls and event streams open, "
            f"the most it may; retry after {retry_after_ms} ms, or when one ends"
        )
        self.args = (self.message,)


class AddonNotFound(NotFound):
    """The add-on was not found."""

    code = "AddonNotFound"


class RequestTooLarge(ClustertasksError):
    """The request body is too large."""

    code = "RequestEntityTooLarge"


# --- nodes: drain, removal, upgrade, repair, attach (operations/drain.py and friends) -------


class NodeNotFound(NotFound):
    """The node was not found."""

    code = "ErrorNodeNotFound"


class DrainTimeout(PermanentError):
    """A node could not be drained in time: evictions were refused by a PodDisruptionBudget."""

    code = "DrainTimeout"


class NodeUpgradeFailed(PermanentError):
    """A node failed to upgrade."""

    code = "NodeUpgradeFailed"


class NodeRepairFailed(PermanentError):
    """A node could not be repaired."""

    code = "NodeRepairFailed"


class InstanceNotFound(PermanentError):
    """The ECS instance was not found."""

    code = "InstanceNotFound"


class InstanceNotFree(PermanentError):
    """The ECS instance is not free: it belongs to a cluster or is not running."""

    code = "InstanceNotFree"


class TooManyFailedNodes(PermanentError):
    """More nodes failed than the rolling policy's ``max_failed_nodes`` allows."""

    code = "MaxFailedNodesExceeded"


# --- errors by code: a stored or injected failure becomes the class a real one raises -------

_RAISED_BY_CLOUDS: tuple[type[ClustertasksError], ...] = (
    InstanceCreateFailed,
    NoStock,
    InstanceBootFailed,
    NodeJoinFailed,
    DrainTimeout,
    NodeUpgradeFailed,
    NodeRepairFailed,
    InstanceNotFound,
    InstanceNotFree,
    TooManyFailedNodes,
    NodeNotFound,
    QuotaExceeded,
    ResourceInUse,
    ClusterStateError,
    PermanentError,
    TemporaryError,
)
_BY_CODE: dict[str, type[ClustertasksError]] = {cls.code: cls for cls in _RAISED_BY_CLOUDS}


def from_code(code: str, message: str) -> ClustertasksError:
    """The error a cloud raises for ``code``: the same class as a real failure of that kind
    (``OperationDenied.NoStock`` is an ``InstanceCreateFailed``, ``TemporarilyUnavailable``
    is retried), or a ``PermanentError`` carrying ``code`` when we know no such failure."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return _coded(PermanentError(message), code)
    return cls(message)


def permanent(code: str, message: str) -> PermanentError:
    """A failure recorded earlier, raised again with its own code; it is never retried."""
    cls = _BY_CODE.get(code)
    if cls is not None and issubclass(cls, PermanentError):
        return cls(message)
    return _coded(PermanentError(message), code)


def _coded(error: PermanentError, code: str) -> PermanentError:
    if code != error.code:
        error.code = code  # this one instance: the class keeps its own code
    return error
