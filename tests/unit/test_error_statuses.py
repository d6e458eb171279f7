"""Every class of the error tree has a status of its own, and only the server's own faults
are 5xx: a client (Terraform, for one) retries a 5xx until its timeout."""

from __future__ import annotations

from clustertasks import errors
from clustertasks.api import errors as api_errors

SERVER_FAULTS = {
    errors.ClustertasksError: 500,
    errors.StorageError: 500,
    errors.ConfigurationError: 500,
    errors.StorageUnavailable: 503,
    errors.Busy: 503,
    errors.ExecutorLocked: 503,
    errors.TemporaryError: 503,
}


def tree(root: type[errors.ClustertasksError]) -> list[type[errors.ClustertasksError]]:
    found = [root]
    for sub in root.__subclasses__():
        found += tree(sub)
    return found


def in_errors_module() -> list[type[errors.ClustertasksError]]:
    return [cls for cls in tree(errors.ClustertasksError) if cls.__module__ == errors.__name__]


def test_every_class_of_the_tree_is_mapped_on_purpose() -> None:
    classes = in_errors_module()
    assert len(classes) > 40
    unmapped = [cls.__name__ for cls in classes if cls not in api_errors.STATUS]
    assert not unmapped, f"add these to clustertasks.api.errors.STATUS: {unmapped}"


def test_no_domain_error_is_a_5xx() -> None:
    for cls in in_errors_module():
        status = api_errors.STATUS[cls]
        if cls in SERVER_FAULTS:
            assert status == SERVER_FAULTS[cls], cls.__name__
        else:
            assert 400 <= status < 500, (cls.__name__, status)
        assert cls.code, cls.__name__


def test_a_class_defined_elsewhere_takes_its_nearest_base() -> None:
    class Elsewhere(errors.ClusterNotFound):
        pass

    assert api_errors.status_of(Elsewhere("c1")) == 404
    assert api_errors.status_of(errors.ClusterStateError("protected")) == 400
    assert api_errors.status_of(errors.NoStock("none left")) == 400
