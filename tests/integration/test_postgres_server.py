"""The throwaway PostgreSQL server that the suite's database tests run against."""

from __future__ import annotations

import socket

import psycopg
import pytest

from tests.support.postgres import PostgresServer


@pytest.mark.postgres
def test_server_serves_separate_databases_and_leaves_nothing_behind() -> None:
    server = PostgresServer()
    server.start()
    try:
        # The second name needs quoting both in SQL and in the URL.
        names = ["clustertasks_first", 'Second DB/"quoted"']
        urls = [server.create_database(name) for name in names]
        for name, url in zip(names, urls, strict=True):
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT current_database()").fetchone()
            assert row == (name,)
    finally:
        server.stop()

    assert server.tmpdir is not None
    assert not server.tmpdir.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
