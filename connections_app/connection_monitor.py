"""The monitor API for application code (``connection_monitor``): checks defined from code,
the check runner started in the caller's event loop, and the /health/ document as a dict::

    await start_connection_monitoring()
    monitor = get_global_monitor()
    monitor.add_health_check("api", HealthCheckConfig(endpoint="https://api.example.com/health"))
    health_summary = monitor.get_health_summary()
    await stop_connection_monitoring()

Nothing here is a second store or a second runner. A check added here is a ``HealthCheck`` row
like one added in the admin or by ``importchecks`` (same validation, same signals, shown and
editable in the admin), and ``start_connection_monitoring`` runs ``Monitor.run_forever``, the
scheduler of ``runchecks``, as a task in the running loop, with the alert sender in the same loop
(``runchecks`` and ``serve`` give it a process of its own: ``alerts.process``). Several processes
may each call these: each check is claimed by one runner at a time (``monitor.claim_due_checks``).

``add_health_check``, ``remove_health_check`` and ``get_health_summary`` are sync, and work from
a coroutine too (an application's ``async def startup()`` calls ``add_health_check``): see
``_off_the_loop``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, fields
from typing import TypeVar

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, connections, transaction

from connections_app.alerts.sender import run_alert_sender
from connections_app.models import (
    KIND_HTTP,
    KIND_REDIS,
    KIND_TCP,
    RULE_FIELDS,
    HealthCheck,
    split_tags,
)
from connections_app.monitor import Monitor
from connections_app.probe_slots import runner_manager
from connections_app.redaction import redact, redact_url
from connections_app.summary import HealthSummary, health_summary

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The config's names for the model's fields where they differ (the documented API's names).
CONFIG_NAMES = {"target": "endpoint", "interval": "check_interval"}
MODEL_NAMES = {config: model for model, config in CONFIG_NAMES.items()}
#: The fields a config sets on its check (by the config's names); the others keep their values.
CONFIG_FIELDS = (
    "endpoint",
    "check_interval",
    "timeout",
    "kind",
    "failures_before_down",
    "successes_before_up",
    "tags",
    "critical",
)

#: URL schemes whose kind is certain. A ``postgres://`` URL is not among them: no kind probes a
#: database by URL yet (``database`` takes a Django alias).
SCHEME_KINDS = {"http": KIND_HTTP, "https": KIND_HTTP, "redis": KIND_REDIS, "rediss": KIND_REDIS}
UNSUPPORTED_SCHEMES = ("postgres", "postgresql")


def _default(field: str):
    """The model's default for ``field``: a config and a check made in the admin start alike."""
    return HealthCheck._meta.get_field(field).default


class InvalidHealthCheckConfig(ValueError):
    """Bad values for a check. ``errors`` maps each bad field, by its config name (``endpoint``,
    ``check_interval``...), to one message; ``str()`` is ``"field: message"``, ``"; "``-joined."""

    def __init__(self, errors: dict[str, str]) -> None:
        order = ("name", *CONFIG_FIELDS)  # as the config is written; any other field last
        self.errors = dict(sorted(errors.items(), key=lambda item: _place(item[0], order)))
        super().__init__("; ".join(f"{field}: {text}" for field, text in self.errors.items()))


@dataclass(frozen=True, repr=False)
class HealthCheckConfig:
    """What to check, how often, and how its results are judged; checked when it is made.

    Fields:
        endpoint: the target: a URL for http(s) and redis, ``host:port`` for tcp, a Django
            alias for ``database`` and ``channel_layer`` (those need ``kind``).
        check_interval: seconds between checks, 1 to 604800.
        timeout: seconds, above 0, at most 300 and below ``check_interval``.
        kind: ``http``, ``tcp``, ``redis``, ``database`` or ``channel_layer``; by default
            inferred from the endpoint (http/https, redis/rediss, host:port), and afterwards
            always the kind the check gets.
        failures_before_down: failures in a row before DOWN (DEGRADED before), 1 to 100.
        successes_before_up: successes in a row before a DOWN check is UP again, 1 to 100.
        tags: a string (comma or space separated) or strings; kept sorted, lower case, unique.
        critical: a critical check that is DOWN makes /health/ answer 503.

    Bad values raise ``InvalidHealthCheckConfig`` (a ``ValueError``) naming each bad field, by
    the rules the admin form applies (``HealthCheck.full_clean``).
    """

    endpoint: str
    check_interval: float = _default("interval")
    timeout: float = _default("timeout")
    kind: str | None = None
    failures_before_down: int = _default("failures_before_down")
    successes_before_up: int = _default("successes_before_up")
    tags: str | Iterable[str] = ()
    critical: bool = _default("critical")

    def __post_init__(self) -> None:
        if isinstance(self.tags, Iterable) and not isinstance(self.tags, str | bytes):
            object.__setattr__(self, "tags", tuple(self.tags))  # a generator is read once
        errors = self._type_errors()
        if "tags" not in errors:
            object.__setattr__(self, "tags", tuple(split_tags(_joined(self.tags))))
        if "endpoint" not in errors and "kind" not in errors and self.kind is None:
            kind, error = infer_kind(self.endpoint)
            if error:
                errors["endpoint"] = error
            object.__setattr__(self, "kind", kind)
        # The model's rules for the values of the right type (it judges the others no further).
        refused = {MODEL_NAMES.get(field, field) for field in errors}
        if self.kind is None:
            refused.add("kind")
        check = HealthCheck()
        self.apply_to(check, skip=refused)
        errors.update(validation_errors(check, exclude={"name", *refused}, database=False))
        if errors:
            raise InvalidHealthCheckConfig(errors)

    def __repr__(self) -> str:
        # A config ends up in logs and tracebacks: never with the endpoint's password.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if isinstance(self.endpoint, str):
            shown["endpoint"] = (
                redact_url(self.endpoint) if "://" in self.endpoint else redact(self.endpoint)
            )
        return f"HealthCheckConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def _type_errors(self) -> dict[str, str]:
        # The model's fields would take 2.5 failures as 2 and True as 1: types are checked first.
        errors = {}
        if not isinstance(self.endpoint, str):
            errors["endpoint"] = f"Expected a string, got {type(self.endpoint).__name__}."
        for field in ("check_interval", "timeout"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                errors[field] = f"Expected a number of seconds, got {type(value).__name__}."
            elif not _fits_a_float(value):
                errors[field] = "Expected a finite number of seconds, got a huge integer."
        if self.kind is not None and not isinstance(self.kind, str):
            errors["kind"] = f"Expected a string or None, got {type(self.kind).__name__}."
        for field in ("failures_before_down", "successes_before_up"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int):
                errors[field] = f"Expected a whole number, got {type(value).__name__}."
        if not isinstance(self.critical, bool):
            errors["critical"] = f"Expected True or False, got {type(self.critical).__name__}."
        tags_error = _tags_error(self.tags)
        if tags_error:
            errors["tags"] = tags_error
        return errors

    def apply_to(self, check: HealthCheck, skip: Iterable[str] = ()) -> None:
        """Set ``check``'s rule fields from this config (but the model fields in ``skip``)."""
        for config_field in CONFIG_FIELDS:
            field = MODEL_NAMES.get(config_field, config_field)
            if field not in skip:
                value = getattr(self, config_field)
                setattr(check, field, _joined(value) if field == "tags" else value)


def infer_kind(endpoint: str) -> tuple[str | None, str | None]:
    """``(kind, None)`` from the endpoint's form, or ``(None, sentence)`` when it says none."""
    scheme, sep, _ = endpoint.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme in SCHEME_KINDS:
            return SCHEME_KINDS[scheme], None
        if scheme in UNSUPPORTED_SCHEMES:
            return None, (
                "PostgreSQL URLs are not supported yet: give kind='tcp' with host:port, or "
                "kind='database' with a Django database alias."
            )
        # Only the scheme is quoted: the rest may hold a password.
        return None, (
            f"No kind is known for the scheme {scheme!r}: give kind, or an http(s):// or "
            "redis(s):// URL."
        )
    if ":" in endpoint:
        return KIND_TCP, None  # host:port; the model judges the host and the port
    return None, (
        "Cannot tell the kind: give kind (for a database or channel layer alias), or a URL, "
        "or host:port."
    )


def validation_errors(
    check: HealthCheck, exclude: Iterable[str] = (), database: bool = True
) -> dict[str, str]:
    """``check.full_clean()``'s errors, one message per field, by the config's field names.

    Without ``database``, no rule that reads the database (uniqueness, constraints) is judged:
    a config is checked where the ORM may not run (in a coroutine).
    """
    try:
        check.full_clean(list(exclude), validate_unique=database, validate_constraints=database)
    except ValidationError as exc:
        return {_config_name(field): " ".join(texts) for field, texts in exc.message_dict.items()}
    return {}


def _config_name(field: str) -> str:
    return "config" if field == NON_FIELD_ERRORS else CONFIG_NAMES.get(field, field)


def _fits_a_float(number: int | float) -> bool:
    try:
        float(number)
    except OverflowError:  # the model's FloatField would raise it, not a ValidationError
        return False
    return True


def _tags_error(tags: object) -> str | None:
    if isinstance(tags, str):
        return None
    if isinstance(tags, bytes) or not isinstance(tags, Iterable):
        return f"Expected a string or strings, got {type(tags).__name__}."
    for tag in tags:
        if not isinstance(tag, str):
            return f"Expected strings, got a {type(tag).__name__}."
        if not tag.strip() or any(c == "," or c.isspace() for c in tag):
            return f"{tag!r} is not one tag: a tag is text with no comma or space."
    return None


def _joined(tags: str | Iterable[str]) -> str:
    return tags if isinstance(tags, str) else ",".join(tags)


def _place(field: str, order: tuple[str, ...]) -> int:
    return order.index(field) if field in order else len(order)


def _off_the_loop(func: Callable[..., T], *args: object) -> T:
    """``func(*args)``, run on a worker thread when this thread runs an event loop.

    Django refuses the ORM on a thread that runs an event loop (``SynchronousOnlyOperation``),
    and an application calls the sync methods below from its ``async def startup()``. asgiref cannot
    help a sync caller there: ``async_to_sync`` refuses to run on a loop's thread, and
    ``sync_to_async`` must be awaited. So the work runs in a transaction on a thread of its own
    while this one waits: the loop is blocked meanwhile, as by any sync call, for one short
    transaction. The answer comes at the commit, before the after-commit callbacks run on: they
    announce the change (``events.announce_checks_changed``), and with the in-memory channel
    layer that is handed to the server's loop, which may be the very loop blocked here.

    Without a running loop the call is direct, on the caller's own connection and transaction.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return func(*args)
    answer: Future[T] = Future()
    context = contextvars.copy_context()  # as sync_to_async does: the caller's context vars
    worker = threading.Thread(
        target=context.run,
        args=(_answer_at_commit, answer, func, *args),
        name=f"connection-monitor-{func.__name__}",
    )
    worker.start()
    return answer.result()


def _answer_at_commit(answer: Future, func: Callable[..., object], *args: object) -> None:
    result: list[object] = []
    try:
        with transaction.atomic():
            # Registered first, so it runs first of the commit's callbacks.
            transaction.on_commit(lambda: answer.set_result(result[0]))
            result.append(func(*args))
    except BaseException as exc:
        if not answer.done():
            answer.set_exception(exc)
        else:  # a later after-commit callback failed: the caller has its answer already
            logger.exception("after committing %s", func.__name__)
    finally:
        connections.close_all()  # this thread's connections only: nothing could reuse them


def _add(name: str, config: HealthCheckConfig) -> HealthCheck:
    # Several processes may add the same check at once (each worker runs its startup()):
    # the unique name decides, and the one whose insert lost updates the winner's row instead.
    try:
        return _create_or_update(name, config)
    except IntegrityError:
        if not HealthCheck.objects.filter(name=name).exists():
            raise
        return _create_or_update(name, config)


def _create_or_update(name: str, config: HealthCheckConfig) -> HealthCheck:
    check = HealthCheck.objects.filter(name=name).first() or HealthCheck(name=name)
    # Only the config's fields: the others (enabled, expected status...) keep what the admin set.
    # So a check paused in the admin stays paused when an application's startup adds it again.
    before = {field: getattr(check, field) for field in RULE_FIELDS}
    config.apply_to(check)
    # The insert below is the uniqueness check (see _add): no read that could race it.
    errors = validation_errors(check, database=False)
    if errors:
        raise InvalidHealthCheckConfig(errors)
    if check._state.adding:
        with transaction.atomic():  # a failed insert must not break the caller's transaction
            check.save()
        return check
    changed = [field for field in RULE_FIELDS if getattr(check, field) != before[field]]
    if not changed:
        return check  # every restart adds its checks again: no write, no dashboard rebuild
    update = list(RULE_FIELDS)
    if {"kind", "target", "interval"} & set(changed):
        # Due now: the next run must not wait for the old interval, nor judge the old target.
        check.next_due_at = None
        update.append("next_due_at")
    check.save(update_fields=update)
    return check


def _remove(name: str) -> bool:
    deleted, _ = HealthCheck.objects.filter(name=name).delete()
    return deleted > 0


class ConnectionMonitor:
    """The process's monitor: checks by name, the runner's task, the health summary.

    Get it with ``get_global_monitor()``. Checks are stored, not held here: any process sees
    the same ones, and they outlive a restart.
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        """Whether the runner's task is alive (started, not stopped or ended)."""
        task = self._task
        return task is not None and not task.done() and not task.get_loop().is_closed()

    def add_health_check(self, name: str, config: HealthCheckConfig) -> HealthCheck:
        """Create the check ``name``, or update the one of that name with ``config``'s fields.

        Other fields of a stored check keep their values: a check paused in the admin stays
        paused. A change of kind, endpoint or interval makes the check due at once. Raises
        ``InvalidHealthCheckConfig`` (a ``ValueError``) naming each bad field.
        """
        if not isinstance(config, HealthCheckConfig):
            raise TypeError(f"config: expected a HealthCheckConfig, got {type(config).__name__}")
        if not isinstance(name, str):
            got = type(name).__name__
            raise InvalidHealthCheckConfig({"name": f"Expected a string, got {got}."})
        return _off_the_loop(_add, name, config)

    def remove_health_check(self, name: str) -> bool:
        """Delete the check ``name`` and its results; False when there is none."""
        return _off_the_loop(_remove, name)

    def get_health_summary(self) -> HealthSummary:
        """The document /health/ serves (JSON-ready): the overall status and, for each check,
        its status, since, flapping, latency, uptime over 24 h, last error category, stale."""
        return _off_the_loop(health_summary)

    async def start(self, concurrency: int | None = None) -> None:
        """Run the checks in the running loop until ``stop()``; nothing when already running.
        ``concurrency``: checks running at once in all (None: as ``runchecks`` sizes it)."""
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ValueError(
                f"concurrency: expected a whole number, 1 or more; got {concurrency!r}"
            )
        if self.running:
            return
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            self._run(stop, concurrency), name="connection-monitor"
        )
        task.add_done_callback(_log_crash)
        self._task, self._stop = task, stop

    async def stop(self) -> None:
        """Stop the runner: the running checks finish (each within its timeout) and every
        result is stored before this returns. Nothing when not running."""
        task, stop = self._task, self._stop
        if task is None or stop is None:
            return
        if task.done() or task.get_loop().is_closed():
            self._task = self._stop = None  # ended already: a crash was logged when it did
            return
        if task.get_loop() is not asyncio.get_running_loop():
            raise RuntimeError("stop_connection_monitoring() must run in the loop that started it")
        stop.set()
        # Shielded: a caller cancelled while waiting must not cut the final flush short.
        await asyncio.wait({asyncio.shield(task)})
        if self._task is task:
            self._task = self._stop = None

    async def _run(self, stop: asyncio.Event, concurrency: int | None) -> None:
        # The manager is entered here, in the task: its sessions belong to this loop, and
        # leaving the block after the runner's final flush closes every socket it opened.
        total, manager = runner_manager(concurrency)
        async with manager:
            # The sender in this loop, not a process of its own: the application's settings
            # (``settings.configure()``, a test database) may be nothing a child could rebuild.
            monitor = Monitor(manager, concurrency=total, alerts=run_alert_sender)
            await monitor.run_forever(stop)


def _log_crash(task: asyncio.Task[None]) -> None:
    # Nobody awaits the task until stop(): without this a crashed runner would be silent.
    if not task.cancelled() and task.exception() is not None:
        logger.error("the connection monitor stopped", exc_info=task.exception())


_global_monitor: ConnectionMonitor | None = None
_global_lock = threading.Lock()


def get_global_monitor() -> ConnectionMonitor:
    """The process's one ``ConnectionMonitor``, made on first use."""
    global _global_monitor
    with _global_lock:
        if _global_monitor is None:
            _global_monitor = ConnectionMonitor()
        return _global_monitor


def reset_global_monitor() -> None:
    """Forget the process's monitor (tests); refused while it runs, whose task would leak."""
    global _global_monitor
    with _global_lock:
        if _global_monitor is not None and _global_monitor.running:
            raise RuntimeError("stop the connection monitor before resetting it")
        _global_monitor = None


async def start_connection_monitoring(
    concurrency: int | None = None,
) -> ConnectionMonitor:
    """Start the global monitor's runner in the running loop (nothing if it runs); the monitor."""
    monitor = get_global_monitor()
    await monitor.start(concurrency)
    return monitor


async def stop_connection_monitoring() -> None:
    """Stop the global monitor's runner, once the running checks' results are stored."""
    await get_global_monitor().stop()
