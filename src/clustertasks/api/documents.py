"""DescribeTaskInfo's JSON documents, kept by task version and state generation.

A task's version changes with every write to the task or its parts, so the document
rendered for one version is the answer for as long as the task is at that version: a
reader then needs the version alone (one statement: the version and the generation)
instead of four queries and a rendering. Only the request id differs between two answers;
it is the document's last key, so it is appended to the kept bytes, which gives exactly the
bytes that rendering the whole document would.

Each API process keeps its own (bounded) copy; nothing here can go stale, since an entry
is used only for the version and the generation it was rendered from. The emulator's reset
or import starts ids and versions again (with ``--sim-seed`` a task id comes back, possibly
at a version it had before, with other content) and bumps the state's generation in the
same transaction (``storage.schema.state_generation``), so the entries of every process
(``serve --workers``, replicas on one database) stop matching at once; the process that
handled the reset also clears its copy, which only frees the memory sooner.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict

from clustertasks.storage import store

MAX_DOCUMENTS = 4096
MAX_BYTES = 64 * 1024 * 1024
MAX_DOCUMENT_BYTES = 1024 * 1024
"""Larger documents are rendered for each request: kept, a few would fill the cache."""
_PLAIN_ID = re.compile(r"[0-9A-Za-z-]+")
"""Request ids JSON writes as they are, in quotes (ours: upper-case UUIDs)."""


class Documents:
    def __init__(self, max_documents: int = MAX_DOCUMENTS, max_bytes: int = MAX_BYTES) -> None:
        self._max_documents = max_documents
        self._max_bytes = max_bytes
        self._bytes = 0
        self._kept: OrderedDict[tuple[str, str], tuple[store.Stamp, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, task_id: str, tz: str, stamp: store.Stamp) -> bytes | None:
        """The document of ``task_id`` at ``stamp`` (version and generation) rendered in
        ``tz``, if kept (without its ``requestId``)."""
        with self._lock:
            kept = self._kept.get((task_id, tz))
            if kept is None or kept[0] != stamp:
                return None
            self._kept.move_to_end((task_id, tz))
            return kept[1]

    def clear(self) -> None:
        """Forget every document: after an emulator reset or import, ids (``--sim-seed``)
        and versions start again, so an id and version no longer name one document."""
        with self._lock:
            self._kept.clear()
            self._bytes = 0

    def put(self, task_id: str, tz: str, stamp: store.Stamp, document: bytes) -> None:
        if len(document) > MAX_DOCUMENT_BYTES:
            return
        with self._lock:
            old = self._kept.pop((task_id, tz), None)
            if old is not None:
                self._bytes -= len(old[1])
                # A newer one was kept meanwhile (a later generation is newer whatever
                # its version: the fields compare in that order).
                if (old[0].generation, old[0].version) > (stamp.generation, stamp.version):
                    self._kept[(task_id, tz)] = old
                    self._bytes += len(old[1])
                    return
            self._kept[(task_id, tz)] = (stamp, document)
            self._bytes += len(document)
            while len(self._kept) > self._max_documents or self._bytes > self._max_bytes:
                _, (_, dropped) = self._kept.popitem(last=False)
                self._bytes -= len(dropped)


def with_request_id(document: bytes, request_id: str) -> bytes:
    """``document`` (a JSON object) with ``"requestId"`` as its last key."""
    if _PLAIN_ID.fullmatch(request_id):
        suffix = b'"' + request_id.encode() + b'"'  # what json.dumps gives such an id
    else:
        suffix = json.dumps(request_id, ensure_ascii=False).encode()
    return document[:-1] + b',"requestId":' + suffix + b"}"
