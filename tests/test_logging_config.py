"""setup_logging / build_logging_config: redaction on every handler, noise, rotation, JSON lines.

Each test configures the real logging tree (``setup_logging`` is global by nature) and the
``logging_state`` fixture puts the previous tree back afterwards.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from django.conf import settings

from connections_app.logging_config import (
    NOISY_LOGGERS,
    build_logging_config,
    get_logger,
    setup_logging,
)


@pytest.fixture
def logging_state():
    """Snapshot the logging tree; close what the test configured and restore the snapshot."""
    manager = logging.root.manager
    saved = {
        name: (logger.level, logger.handlers[:], logger.propagate, logger.disabled)
        for name, logger in [("", logging.root), *manager.loggerDict.items()]
        if isinstance(logger, logging.Logger)
    }
    yield
    for name, logger in [("", logging.root), *manager.loggerDict.items()]:
        if not isinstance(logger, logging.Logger):
            continue
        for handler in logger.handlers:
            if name not in saved or handler not in saved[name][1]:
                handler.close()
        level, handlers, propagate, disabled = saved.get(name, (logging.NOTSET, [], True, False))
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate, logger.disabled = propagate, disabled


@pytest.fixture
def log_file(tmp_path, logging_state) -> Path:
    """Logging configured as in production with a file, DEBUG and up, no console."""
    path = tmp_path / "logs" / "app.log"
    path.parent.mkdir()
    setup_logging(log_level="DEBUG", log_file=str(path), enable_console=False, enable_file=True)
    return path


def test_settings_logging_is_built_by_build_logging_config():
    assert settings.LOGGING["filters"]["redact"]["()"].endswith("RedactionFilter")
    assert settings.LOGGING["handlers"]["console"]["class"].endswith("StderrHandler")


@pytest.mark.parametrize("json_lines", [False, True])
def test_every_handler_has_the_redaction_filter(tmp_path, json_lines):
    config = build_logging_config(
        log_file=str(tmp_path / "app.log"), enable_file=True, json_lines=json_lines
    )
    assert set(config["handlers"]) == {"console", "file"}
    for handler in config["handlers"].values():
        assert handler["filters"] == ["redact"]
        assert handler["formatter"] == ("json" if json_lines else "plain")


def test_it_refuses_a_file_handler_without_a_path():
    with pytest.raises(ValueError, match="log_file"):
        build_logging_config(enable_file=True)


def test_the_documented_usage_works(tmp_path, logging_state, capsys):
    path = tmp_path / "app.log"
    setup_logging(log_level="INFO", log_file=str(path), enable_console=True, enable_file=True)
    logger = get_logger(__name__)
    logger.info("Clean, actionable log message")

    assert logger.name == __name__
    assert "Clean, actionable log message" in path.read_text()
    assert "Clean, actionable log message" in capsys.readouterr().err


def test_it_never_creates_the_log_directory(tmp_path, logging_state):
    path = tmp_path / "a" / "b" / "c" / "app.log"
    setup_logging(log_file=str(path), enable_console=False)
    get_logger("test").warning("no folders made")  # the handler reports its own failure
    assert not (tmp_path / "a").exists()


def test_console_logs_go_to_stderr_not_stdout(logging_state, capsys):
    setup_logging(log_level="INFO", enable_console=True)
    get_logger("test").warning("to stderr please")
    captured = capsys.readouterr()
    assert "to stderr please" in captured.err
    assert captured.out == ""


def test_it_rotates_by_size_and_keeps_backup_count_files(tmp_path, logging_state):
    path = tmp_path / "logs" / "app.log"
    path.parent.mkdir()
    setup_logging(log_file=str(path), enable_console=False, max_bytes=400, backup_count=2)
    logger = get_logger("test.rotation")
    for n in range(60):
        logger.warning("line %03d of the rotation test", n)

    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["app.log", "app.log.1", "app.log.2"]
    assert all(p.stat().st_size <= 400 for p in path.parent.iterdir())
    assert "line 059" in path.read_text()


def test_noisy_loggers_are_quiet_by_default(log_file):
    for name in NOISY_LOGGERS:
        logging.getLogger(f"{name}.inner").info(f"{name} chatter")
        logging.getLogger(name).warning(f"{name} trouble")
    text = log_file.read_text()
    for name in NOISY_LOGGERS:
        assert f"{name} chatter" not in text
        assert f"{name} trouble" in text


def test_the_third_party_level_is_configurable(tmp_path, logging_state):
    path = tmp_path / "app.log"
    setup_logging(log_file=str(path), enable_console=False, third_party_level="INFO")
    logging.getLogger("urllib3.connectionpool").info("Starting new HTTP connection")
    assert "Starting new HTTP connection" in path.read_text()


def test_django_loggers_reach_our_handlers_once_and_redacted(log_file):
    logging.getLogger("django.request").error("Internal Server Error: /x?token=abc123")
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1
    assert "abc123" not in lines[0]
    assert "token=***" in lines[0]


def test_exception_text_and_chained_causes_are_redacted(log_file):
    try:
        try:
            raise ValueError("connect postgres://app:inner-secret@127.0.0.1/db")
        except ValueError as inner:
            raise RuntimeError("retry with password=outer-secret") from inner
    except RuntimeError:
        get_logger("test").exception("probe failed")

    text = log_file.read_text()
    assert "Traceback" in text
    assert "inner-secret" not in text
    assert "outer-secret" not in text
    # A URL in an exception's text keeps its scheme, host, port and path only.
    assert "postgres://127.0.0.1/db" in text


def test_stack_info_is_redacted(log_file):
    get_logger("test").warning("look", stack_info=True)  # api_key=in-the-source-line
    text = log_file.read_text()
    assert "Stack (most recent call last)" in text
    assert "in-the-source-line" not in text


def test_a_broken_format_does_not_leak_its_arguments(log_file, capsys):
    get_logger("test").warning("%d checks", "password=hunter2")
    assert "hunter2" not in log_file.read_text()
    assert "unformattable log message" in log_file.read_text()
    assert "hunter2" not in capsys.readouterr().err


def test_json_lines_are_one_redacted_object_per_line(tmp_path, logging_state):
    path = tmp_path / "app.jsonl"
    setup_logging(log_file=str(path), enable_console=False, json_lines=True)
    logger = get_logger("test.json")
    logger.warning("token=%s\nsecond line", "abc123")
    try:
        raise ConnectionError("Authorization: Bearer xyz987654321")
    except ConnectionError:
        logger.exception("send failed")

    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["level"] for e in entries] == ["WARNING", "ERROR"]
    assert entries[0]["logger"] == "test.json"
    assert entries[0]["message"] == "token=***\nsecond line"
    assert "exception" not in entries[0]
    assert "Traceback" in entries[1]["exception"]
    assert "xyz987654321" not in path.read_text()
    assert entries[1]["time"].endswith("+00:00")


def test_a_library_traceback_per_retry_becomes_one_counted_line(tmp_path):
    from connections_app.error_handler import get_global_error_handler, reset_global_error_handler

    reset_global_error_handler()
    log_file = tmp_path / "app.log"
    setup_logging(log_level="INFO", log_file=str(log_file), enable_console=False)
    library = logging.getLogger("channels_redis.pubsub")
    for _ in range(50):
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError:
            library.exception("Unexpected exception in receive task")
    stats = get_global_error_handler().get_error_stats()
    assert stats["by_category"]["refused"] == 50
    text = log_file.read_text()
    assert "Traceback" not in text
    assert text.count("Connection refused") == 1, text
    reset_global_error_handler()
