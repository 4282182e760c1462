"""Pooled connections vs a new connection per request: sequential GETs, sync and async.

    .venv/bin/python bench/bench_pooling.py [--requests 2000]

The server (tests/http_targets.py, aiohttp) runs in a child process so that it does not share
the client's GIL: the comparison measures connection set-up, not the server. Prints a table and
writes bench/results/pooling.json. Target: pooled at least 3x faster than a new connection per
request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's packages import

import aiohttp  # noqa: E402
import requests  # noqa: E402

from bench.proc_stats import cpu_seconds  # noqa: E402
from connections_app.connection_manager import ConnectionManager  # noqa: E402
from tests.http_targets import HttpTarget  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "pooling.json"
TARGET_RATIO = 3.0
WARM_UP = 20
TIMEOUT = 10.0


def serve(pipe: Connection) -> None:
    """The child process: an HTTP and an HTTPS target until the parent says stop."""
    with HttpTarget() as plain, HttpTarget(tls=True) as tls:
        pipe.send([("http", plain.url("/ok"), None), ("https", tls.url("/ok"), str(tls.ca_file))])
        pipe.recv()


@dataclass
class Timing:
    """Wall time of a run, and the CPU time the client (this process) and the server spent."""

    seconds: float
    client_cpu: float
    server_cpu: float


def timed(run: Callable[[int], None], count: int, server_pid: int) -> Timing:
    run(WARM_UP)
    server_started = cpu_seconds(server_pid)
    cpu_started = time.process_time()
    started = time.perf_counter()
    run(count)
    seconds = time.perf_counter() - started
    return Timing(
        seconds, time.process_time() - cpu_started, cpu_seconds(server_pid) - server_started
    )


def timed_async(run: Callable[[int], Awaitable[None]], count: int, server_pid: int) -> Timing:
    return timed(lambda n: asyncio.run(run(n)), count, server_pid)


def sync_modes(url: str, ca_file: str | None) -> dict[str, Callable[[int], None]]:
    verify: str | bool = ca_file or True

    def pooled(count: int) -> None:
        with ConnectionManager() as conn:
            session = conn.get_sync_connection()
            session.verify = verify
            for _ in range(count):
                session.get(url).raise_for_status()
            conn.release_sync_connection()

    def fresh_session(count: int) -> None:
        for _ in range(count):
            requests.get(url, timeout=TIMEOUT, verify=verify).raise_for_status()

    def connection_close(count: int) -> None:
        close = {"Connection": "close"}
        with requests.Session() as session:
            for _ in range(count):
                response = session.get(url, timeout=TIMEOUT, headers=close, verify=verify)
                response.raise_for_status()

    return {"pooled": pooled, "fresh session": fresh_session, "Connection: close": connection_close}


def async_modes(url: str, ca_file: str | None) -> dict[str, Callable[[int], Awaitable[None]]]:
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    # One context for every mode: building one per request would only slow the baselines.
    tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True

    async def pooled(count: int) -> None:
        async with ConnectionManager() as conn:
            for _ in range(count):
                await conn.request("GET", url, raise_for_status=True, ssl=tls)

    async def fresh_session(count: int) -> None:
        for _ in range(count):
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(url, ssl=tls) as response:
                    response.raise_for_status()
                    await response.read()

    async def force_close(count: int) -> None:
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for _ in range(count):
                async with session.get(url, ssl=tls) as response:
                    response.raise_for_status()
                    await response.read()

    return {"pooled": pooled, "fresh session": fresh_session, "force_close": force_close}


def measure(targets: list[tuple[str, str, str | None]], count: int, server_pid: int) -> list[dict]:
    rows = []
    for scheme, url, ca_file in targets:
        for mode, run in sync_modes(url, ca_file).items():
            rows.append(row(f"sync {scheme}", mode, count, timed(run, count, server_pid)))
        for mode, arun in async_modes(url, ca_file).items():
            timing = timed_async(arun, count, server_pid)
            rows.append(row(f"async {scheme}", mode, count, timing))
    for r in rows:
        pooled = next(p for p in rows if p["path"] == r["path"] and p["mode"] == "pooled")
        r["ratio"] = round(r["seconds"] / pooled["seconds"], 2)
    return rows


def row(path: str, mode: str, count: int, timing: Timing) -> dict:
    return {
        "path": path,
        "mode": mode,
        "requests": count,
        "seconds": round(timing.seconds, 3),
        "req_per_s": round(count / timing.seconds),
        "wall_us_per_request": round(timing.seconds / count * 1e6),
        "client_cpu_us_per_request": round(timing.client_cpu / count * 1e6),
        "server_cpu_us_per_request": round(timing.server_cpu / count * 1e6),
    }


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'path':<12} {'mode':<18} {'requests':>8} {'seconds':>8} {'req/s':>7} {'ratio':>6} "
        f"{'wall us':>8} {'client CPU':>10} {'server CPU':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['path']:<12} {r['mode']:<18} {r['requests']:>8} {r['seconds']:>8.3f} "
            f"{r['req_per_s']:>7} {r['ratio']:>5.2f}x {r['wall_us_per_request']:>8} "
            f"{r['client_cpu_us_per_request']:>10} {r['server_cpu_us_per_request']:>10}"
        )
    print("ratio: this mode's time / pooled time on the same path (higher: pooling helps more)")
    print("wall us, client CPU, server CPU: microseconds per request (CPU from the kernel's count)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="GETs per mode (default 2000)")
    args = parser.parse_args()
    if args.requests < 1:
        parser.error("--requests must be 1 or more")

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=serve, args=(theirs,), daemon=True)
    server.start()
    try:
        if not ours.poll(TIMEOUT):
            raise RuntimeError("the benchmark server did not start")
        rows = measure(ours.recv(), args.requests, server.pid)
    finally:
        ours.send("stop")
        server.join(TIMEOUT)
        ours.close()
        theirs.close()

    print_table(rows)
    worst = {
        path: min(r["ratio"] for r in rows if r["path"] == path and r["mode"] != "pooled")
        for path in dict.fromkeys(r["path"] for r in rows)
    }
    report = {
        "benchmark": "pooling",
        "requests_per_mode": args.requests,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "requests_version": requests.__version__,
        "server": "tests/http_targets.py (aiohttp) in a child process, 127.0.0.1, HTTP and HTTPS",
        "target_ratio": TARGET_RATIO,
        "worst_ratio_by_path": worst,
        "target_met_by_path": {path: ratio >= TARGET_RATIO for path, ratio in worst.items()},
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for path, ratio in worst.items():
        verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
        print(f"{path}: worst ratio {ratio:.2f}x, target {TARGET_RATIO:.0f}x {verdict}")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
