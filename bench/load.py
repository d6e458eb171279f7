"""A bounded HTTP load generator, run as its own process (loopback only).

    python bench/load.py --url http://127.0.0.1:PORT --paths FILE --requests N \
        --concurrency C --time-limit S [--access-key-id ID --access-key-secret SECRET]

Sends N GET requests (or fewer if the time limit comes first) for the paths in FILE, in
order and round robin, from C concurrent connections, and prints one JSON line: requests/s,
latency percentiles in milliseconds, and how many answers were not 200. When the server
wants signed requests, every request is signed (ACS3, as the official SDK does) before the
clock starts, so the load generator's own signing costs nothing in the figures.

``--client wrk`` hands the requests, written out whole, to wrk (bench/load.lua): far
less CPU per request than this Python client's, which on a small machine is CPU the server
under test does not get. wrk sends for exactly ``--time-limit`` seconds; ``--requests`` is
then how many requests are written for it (it fails when the server would take more).
``raw`` (the default) needs nothing but Python; ``httpx`` is the common client, and the
slowest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402


def signed_headers(
    host: str, paths: list[str], count: int, key_id: str | None, secret: str | None
) -> list[dict[str, str]]:
    if not key_id or not secret:
        return [{} for _ in range(count)]
    try:
        from clustertasks.domain import signing
    except ImportError:  # a server without signatures
        return [{} for _ in range(count)]
    now_us = time.time_ns() // 1000
    out: list[dict[str, str]] = []
    for i in range(count):
        path, _, query = paths[i % len(paths)].partition("?")
        request = signing.HttpRequest("GET", path, query, (("host", host),), b"")
        out.append(signing.sign_acs3(request, key_id, secret, now_us=now_us))
    return out


class RawConnection:
    """HTTP/1.1 keep-alive GETs over one asyncio stream, parsed just enough.

    httpx spends about 4.6 ms of CPU per request on this 2-core machine, more than the
    server does, so with it the load generator measured itself; this costs ~0.1 ms.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: dict[str, str]) -> int:
        status, _ = await self.request("GET", path, headers)
        return status

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        reused = self._writer is not None
        try:
            return await self._exchange(method, path, headers, body)
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
            partial = getattr(exc, "partial", b"")
            if not reused or partial:
                raise
        # The server closed the idle keep-alive connection before reading this request
        # (uvicorn does after 5 s): send it again on a new one, as HTTP clients do.
        await self.close()
        return await self._exchange(method, path, headers, body)

    async def _exchange(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"{method} {path} HTTP/1.1", f"host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body or method != "GET":
            lines.append(f"content-length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self._reader.readexactly(length)
        return int(status_line.split(" ", 2)[1]), payload

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


async def load_raw(
    url: str, paths: list[str], headers: list[dict[str, str]], concurrency: int, limit: float
) -> dict[str, float]:
    parts = urlsplit(url)
    connections = [
        RawConnection(parts.hostname or "127.0.0.1", parts.port or 80) for _ in range(concurrency)
    ]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    cursor = 0
    total = len(headers)
    deadline = time.perf_counter() + limit

    async def worker(connection: RawConnection) -> None:
        nonlocal cursor, errors
        while cursor < total and time.perf_counter() < deadline:
            i = cursor
            cursor += 1
            started = time.perf_counter()
            try:
                status = await connection.get(paths[i % len(paths)], headers[i])
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                await connection.close()
                continue
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1

    try:
        await asyncio.gather(*(c.get("/healthz", {}) for c in connections))  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in connections))
        elapsed = time.perf_counter() - started
    finally:
        for connection in connections:
            await connection.close()
    return _figures(latencies, statuses, errors, elapsed)


def _figures(
    latencies: list[float], statuses: dict[int, int], errors: int, elapsed: float
) -> dict[str, float]:
    ok = statuses.get(200, 0)
    return {
        "requests": float(len(latencies)),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": common.percentile(latencies, 50) * 1000,
        "p99_ms": common.percentile(latencies, 99) * 1000,
        "not_200": float(len(latencies) - ok + errors),
    }


async def load_httpx(
    url: str, paths: list[str], headers: list[dict[str, str]], concurrency: int, limit: float
) -> dict[str, float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    cursor = 0
    total = len(headers)
    deadline = time.perf_counter() + limit
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, trust_env=False) as client:

        async def worker() -> None:
            nonlocal cursor, errors
            while cursor < total and time.perf_counter() < deadline:
                i = cursor
                cursor += 1
                started = time.perf_counter()
                try:
                    response = await client.get(paths[i % len(paths)], headers=headers[i])
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        # One warm-up request per connection, outside the figures.
        await asyncio.gather(*(client.get("/healthz") for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return _figures(latencies, statuses, errors, elapsed)


def load_wrk(
    url: str, paths: list[str], headers: list[dict[str, str]], concurrency: int, limit: float
) -> dict[str, float]:
    """The requests through wrk for ``limit`` seconds, each sent at most once."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("load.py: --client wrk needs wrk on PATH (scripts/ensure-wrk)")
    netloc = urlsplit(url).netloc
    with tempfile.TemporaryDirectory(prefix="ct-load-") as tmp:
        requests = Path(tmp) / "requests.http"
        with requests.open("w", encoding="latin-1", newline="") as out:
            for i, extra in enumerate(headers):
                lines = [f"GET {paths[i % len(paths)]} HTTP/1.1", f"host: {netloc}"]
                lines += [f"{k}: {v}" for k, v in extra.items()]
                out.write("\r\n".join(lines) + "\r\n\r\n")
        command = [wrk, "-t", "1", "-c", str(concurrency), "-d", f"{max(limit, 1):.0f}s"]
        command += ["--timeout", "10s", "-s", str(ROOT / "bench" / "load.lua"), url]
        command += ["--", str(requests), "1"]
        figures = common.json_line(command, limit + 60, "wrk")
    if figures.pop("exhausted"):
        raise SystemExit(
            f"load.py: wrk sent all {len(headers)} requests before {limit:.0f} s were up:"
            " give it more --requests"
        )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--paths", required=True, help="file with one path per line")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--time-limit", type=float, default=30.0)
    parser.add_argument("--client", choices=("raw", "httpx", "wrk"), default="raw")
    parser.add_argument("--access-key-id")
    parser.add_argument("--access-key-secret")
    args = parser.parse_args()
    host = urlsplit(args.url).hostname or ""
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("loopback only")
    netloc = urlsplit(args.url).netloc
    paths = [p for p in Path(args.paths).read_text().splitlines() if p]
    headers = signed_headers(
        netloc, paths, args.requests, args.access_key_id, args.access_key_secret
    )
    if args.client == "wrk":
        figures = load_wrk(args.url, paths, headers, args.concurrency, args.time_limit)
    else:
        load = load_raw if args.client == "raw" else load_httpx
        figures = asyncio.run(load(args.url, paths, headers, args.concurrency, args.time_limit))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
