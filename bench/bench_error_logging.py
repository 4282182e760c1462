"""Benchmark: 100,000 identical connection errors through the error handler vs plain logging.

Both sides get the same real ``ConnectionRefusedError`` (one connect to a closed loopback port,
then the same exception object reused) and both write to a log file:

* handler: ``ErrorHandler.handle_error`` with ``setup_logging`` (redaction filter, rotating
  file), then ``close()`` so the summary line is written too;
* baseline: ``logger.exception`` per error to a plain ``logging.FileHandler``.

Targets: the handler writes at most 2 log lines, counts exactly every error, and is at least
10x faster than the baseline. Prints a table, writes bench/results/error_logging.json and exits
with status 1 when a target is missed.

Run:  .venv/bin/python bench/bench_error_logging.py  (about 20 s; --errors 10000 for a quick look)
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's packages import

from connections_app.error_handler import ErrorContext, ErrorHandler  # noqa: E402
from connections_app.logging_config import PLAIN_FORMAT, setup_logging  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "error_logging.json"
MAX_LINES = 2
MIN_SPEEDUP = 10.0


def refused_error() -> tuple[ConnectionRefusedError, str]:
    """A real refusal: connect to a loopback port that was just bound and released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError as exc:
        return exc, f"127.0.0.1:{port}"
    raise RuntimeError(f"port {port} accepted a connection; run the benchmark again")


def run_handler(exc: BaseException, endpoint: str, errors: int, log_file: Path) -> dict:
    setup_logging(log_level="INFO", log_file=str(log_file), enable_console=False)
    handler = ErrorHandler()
    context = ErrorContext("bench.connect", endpoint)
    started = time.perf_counter()
    for _ in range(errors):
        handler.handle_error(exc, context)
    handler.close()
    seconds = time.perf_counter() - started
    stats = handler.get_error_stats()
    logging.shutdown()
    (fingerprint_stats,) = stats["by_fingerprint"].values()
    return {
        "seconds": seconds,
        "log_lines": _lines(log_file),
        "counted": stats["total"],
        "counted_by_fingerprint": fingerprint_stats["count"],
    }


def run_baseline(exc: BaseException, endpoint: str, errors: int, log_file: Path) -> dict:
    logger = logging.getLogger("bench.baseline")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    logger.addHandler(file_handler)
    started = time.perf_counter()
    for _ in range(errors):
        logger.exception("bench.connect %s failed", endpoint, exc_info=exc)
    seconds = time.perf_counter() - started
    logger.removeHandler(file_handler)
    file_handler.close()
    return {"seconds": seconds, "log_lines": _lines(log_file)}


def _lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for _ in file)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--errors", type=int, default=100_000)
    errors = parser.parse_args().errors
    exc, endpoint = refused_error()
    with tempfile.TemporaryDirectory() as folder:
        baseline = run_baseline(exc, endpoint, errors, Path(folder) / "baseline.log")
        handler = run_handler(exc, endpoint, errors, Path(folder) / "logs" / "handler.log")
    speedup = baseline["seconds"] / handler["seconds"]
    passed = {
        f"handler writes at most {MAX_LINES} log lines": handler["log_lines"] <= MAX_LINES,
        f"handler counts exactly {errors:,}": handler["counted"] == errors
        and handler["counted_by_fingerprint"] == errors,
        f"handler at least {MIN_SPEEDUP:g}x faster": speedup >= MIN_SPEEDUP,
    }
    print(f"{errors:,} identical ConnectionRefusedError to a log file\n")
    print(f"{'':<24}{'log lines':>12}{'counted':>12}{'seconds':>10}{'us/error':>10}")
    for name, result in (("logger.exception", baseline), ("ErrorHandler", handler)):
        counted = f"{result['counted']:,}" if "counted" in result else "-"
        per_error = result["seconds"] / errors * 1e6
        print(
            f"{name:<24}{result['log_lines']:>12,}{counted:>12}"
            f"{result['seconds']:>10.3f}{per_error:>10.2f}"
        )
    print(f"\nspeed-up: {speedup:.1f}x")
    for target, ok in passed.items():
        print(f"{'PASS' if ok else 'FAIL'}  {target}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "error_logging",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "errors": errors,
        "baseline": baseline,
        "handler": handler,
        "speedup": round(speedup, 2),
        "targets": passed,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0 if all(passed.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
