"""The floor of the read path: FastAPI and one SQLite primary-key lookup, nothing else.

    python bench/floor.py --db FILE --port PORT

Serves ``GET /tasks/{task_id}`` from a table ``documents(task_id PRIMARY KEY, document)``
holding each task's DescribeTaskInfo JSON as clustertasks renders it, and ``GET /healthz``
(the load generator warms its connections up on it). One process, on uvicorn with its
fastest HTTP stack (httptools and uvloop). No signature check, no request id, no
middleware: what any server answering this document from SQLite cannot go below.

``write_documents(path, documents)`` makes the table (bench/read_path.py fills it with the
documents of the tasks it measures clustertasks on).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Iterable

import uvicorn
from fastapi import FastAPI, HTTPException, Response

JSON_TYPE = "application/json;charset=utf-8"
SELECT = "SELECT document FROM documents WHERE task_id = ?"


def write_documents(path: str, documents: Iterable[tuple[str, bytes]]) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS documents (task_id TEXT PRIMARY KEY, document BLOB)"
        )
        conn.executemany("INSERT OR REPLACE INTO documents VALUES (?, ?)", documents)
    conn.close()


def create_app(path: str) -> FastAPI:
    app = FastAPI()
    # One connection for the process: the route runs on the event loop, never in a thread.
    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA query_only=1")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON_TYPE)

    @app.get("/tasks/{task_id}")
    async def describe(task_id: str) -> Response:
        row = conn.execute(SELECT, (task_id,)).fetchone()
        if row is None:
            raise HTTPException(404)
        return Response(row[0], media_type=JSON_TYPE)

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.db),
        host="127.0.0.1",
        port=args.port,
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
