"""What staff see: status in colour, filters, actions, read-only results and error statistics."""

from __future__ import annotations

from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from connections_app.admin_lists import (
    CappedPaginator,
    CategoryFilter,
    CheckedFilter,
    PlainActionCheckbox,
    SortKey,
)
from connections_app.admin_lookups import DeclaredLookupsOnly
from connections_app.alerts.enqueue import channels_for
from connections_app.check_page import page_data
from connections_app.cli import counted
from connections_app.events import announce_checks_changed
from connections_app.http_options import parse_headers
from connections_app.masking import masked, masked_headers
from connections_app.models import (
    KIND_PUSH,
    STATUS_CHOICES,
    CheckResult,
    ErrorStat,
    HealthCheck,
    Runner,
    StateChange,
    split_tags,
    status_rank,
)
from connections_app.permissions import RUN_CHECKS
from connections_app.push_help import badge_lines, ping_url, push_lines
from connections_app.redaction import REDACTED
from connections_app.run_now import run_in_background
from connections_app.runners import GONE, runner_state
from connections_app.state import switch
from connections_app.summary import NO_HISTORY, HistoryFigures, history_figures

STATUS_COLOURS = {
    "up": "#1a7f37",
    "degraded": "#9a6700",
    "down": "#cf222e",
    "paused": "#57606a",
    "maintenance": "#0969da",
    "unknown": "#6e7781",
}
CHANGES_SHOWN = 20
RESULTS_PER_PAGE = 25


def status_badge(status: str):
    return format_html(
        '<span class="ch-status" style="background:{};color:#fff;padding:2px 8px;'
        'border-radius:10px;font-weight:600">{}</span>',
        STATUS_COLOURS.get(status, "#6e7781"),
        status.upper(),
    )


def ago(moment) -> str:
    """``"12 s ago"``, ``"5 min ago"``, ``"3 h ago"``, ``"2 days ago"``: never "0 minutes"."""
    seconds = max(0, int((timezone.now() - moment).total_seconds()))
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''} ago"
    return f"{seconds} s ago"


#: The list's history columns: the column, and how to read its figure from
#: ``summary.history_figures``.
HISTORY_COLUMNS = {
    "uptime_24h_display": lambda f: f["uptime"]["24h"],
    "uptime_30d_display": lambda f: f["uptime"]["30d"],
    "p95_display": lambda f: f["latency_24h"]["p95"],
}


def sort_key(figures: dict[int, HistoryFigures], column: str) -> SortKey:
    """A column's figure for every check as a SQL value, for sorting the list by it (NULL
    without history). The figures come from the rollups, so the list sorts by exactly what
    it shows."""
    read = HISTORY_COLUMNS[column]
    return SortKey({pk: read(found) for pk, found in figures.items() if read(found) is not None})


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return STATUS_CHOICES

    def queryset(self, request, queryset):
        # A hand-edited ?status= that names no status filters nothing, as Django's own do.
        known = {status for status, _label in STATUS_CHOICES}
        return queryset.filter(status=self.value()) if self.value() in known else queryset


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        tags = set()
        # Each distinct set of tags once: a few dozen rows, not one per check.
        for raw in HealthCheck.objects.order_by().values_list("tags", flat=True).distinct():
            tags.update(split_tags(raw))
        return [(t, t) for t in sorted(tags)]

    def queryset(self, request, queryset):
        return queryset.with_tag(self.value()) if self.value() else queryset


class HealthCheckForm(forms.ModelForm):
    """Shows the target with its secrets masked; a masked value keeps the stored one."""

    class Meta:
        model = HealthCheck
        fields = "__all__"
        # A URL with a path and a query does not fit the admin's default 20 characters.
        widgets = {"target": forms.TextInput(attrs={"class": "vTextField", "style": "width:40em"})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["target"] = masked(self.instance.target)
            self.initial["request_headers"] = masked_headers(self.instance.request_headers)

    def clean_request_headers(self) -> str:
        """Headers as typed; a value shown as ``***`` keeps the stored value of that name,
        for the same address only (a secret is never sent, unseen, to another server)."""
        text = self.cleaned_data.get("request_headers", "")
        if REDACTED not in text:
            return text
        stored = self.instance.request_headers if self.instance.pk else ""
        try:
            typed, kept = parse_headers(text), parse_headers(stored)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        for name, value in typed.items():
            if value == REDACTED:
                if name not in kept:
                    raise forms.ValidationError(
                        f"{REDACTED} stands for the stored value of {name}, and none is stored: "
                        "type the value in full."
                    )
                typed[name] = kept[name]
        target = self.cleaned_data.get("target", self.instance.target)
        if self.instance.pk and _address(_split(target)) != _address(_split(self.instance.target)):
            raise forms.ValidationError(
                f"{REDACTED} keeps stored header values for the same address only: type them in "
                "full for the new target."
            )
        return "\n".join(f"{name}: {value}" for name, value in typed.items())

    def clean_target(self) -> str:
        target = self.cleaned_data["target"].strip()
        stored = self.instance.target if self.instance.pk else ""
        if stored and target == masked(stored):
            return stored
        if REDACTED in target:
            target = _with_stored_secrets(target, stored)
        return target


def _with_stored_secrets(target: str, stored: str) -> str:
    """``target`` with each ``***`` replaced by the stored value it stands for: the URL
    password, and secret query parameters by name (the n-th masked ``token=`` gets the n-th
    stored ``token``), so an edit of the host or path keeps the secrets the form never showed.
    A mask that stands for nothing stored is refused."""
    try:
        new, old = urlsplit(target), urlsplit(stored)
        new_password, old_password = new.password, old.password
    except ValueError:
        new = old = new_password = old_password = None
    if new is None:
        raise forms.ValidationError(
            f"{REDACTED} stands for a stored secret, and this target is not a URL to keep it "
            "in: type the secret in full."
        )
    netloc = new.netloc
    if new_password == REDACTED:
        if old_password is None:
            raise forms.ValidationError(
                f"{REDACTED} stands for a stored password, and this target has none to keep: "
                "type the password in full."
            )
        _check_same_address(new, old)
        # The last "@" ends the user information: a password may contain "@" itself.
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{old_password}@{host}"
    query = _with_stored_parameters(new, old)
    kept = new._replace(netloc=netloc, query=query).geturl()
    if REDACTED in kept:
        raise forms.ValidationError(
            f"{REDACTED} stands for a stored secret only as the password or a query parameter's "
            "value: type the value in full."
        )
    return kept


def _check_same_address(new, old) -> None:
    # Staff never see a stored secret: it must not be sent, unseen, to another server.
    if _address(new) != _address(old):
        raise forms.ValidationError(
            f"{REDACTED} keeps a stored secret only for the same scheme, host and port: type "
            "the secret in full for the new address."
        )


def _address(parts) -> tuple:
    try:
        port = parts.port
    except ValueError:  # not a number: never the stored address
        port = parts.netloc
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _with_stored_parameters(new, old) -> str:
    """``new``'s query with each masked parameter value replaced by the stored value of that
    name in ``old``'s."""
    query, stored_query = new.query, old.query
    if REDACTED not in query:
        return query
    stored: dict[str, list[str]] = {}
    for parameter in stored_query.split("&") if stored_query else []:
        name, _, value = parameter.partition("=")
        stored.setdefault(name, []).append(value)
    parameters = []
    for parameter in query.split("&"):
        name, equals, value = parameter.partition("=")
        if equals and REDACTED in value:
            values = stored.get(name) or []
            # The mask of a whole value, or the value as the form showed it with a secret inside.
            if values and (value == REDACTED or value == _masked_value(name, values[0])):
                _check_same_address(new, old)
                value = values.pop(0)
            elif value == REDACTED:
                raise forms.ValidationError(
                    f"{REDACTED} in {name}= stands for a stored value, and the stored target has "
                    f"no {name} to keep: type it in full."
                )
        parameters.append(f"{name}{equals}{value}")
    return "&".join(parameters)


def _masked_value(name: str, value: str) -> str:
    """A query parameter's value as ``masked`` shows it inside the target."""
    return masked(f"http://host/?{name}={value}").partition("?")[2].partition("=")[2]


def _split(target: str):
    try:
        return urlsplit(target)
    except ValueError:
        return urlsplit("")


@admin.register(HealthCheck)
class HealthCheckAdmin(PlainActionCheckbox, DeclaredLookupsOnly, admin.ModelAdmin):
    form = HealthCheckForm
    # Fits 1280 px: the target is the name's tooltip (URLs are long), the last error is its
    # category with the message as tooltip.
    list_display = (
        "name_display",
        "status_display",
        "kind_display",
        "latency_display",
        "last_checked_display",
        "uptime_24h_display",
        "uptime_30d_display",
        "p95_display",
        "last_error_display",
        "enabled",
    )
    list_filter = (StatusFilter, "flapping", "kind", TagFilter, "enabled", "critical")
    # Not the target: a substring search would let anyone guess a stored password.
    search_fields = ("name", "tags")
    actions = ("run_now", "pause", "resume")
    readonly_fields = (
        "created_at",
        "updated_at",
        "next_due_at",
        "status_display",
        "status_since",
        "flapping",
        "tls_days_left",
    )
    fieldsets = (
        (None, {"fields": ("name", "kind", "target", "enabled", "critical", "tags")}),
        (
            "Timing and thresholds",
            {
                "fields": (
                    "interval",
                    "timeout",
                    "failures_before_down",
                    "successes_before_up",
                    "degraded_after_ms",
                    "upside_down",
                )
            },
        ),
        (
            "HTTP",
            {
                # change_form.html hides this fieldset unless the kind is http.
                "classes": ("http-only",),
                "fields": (
                    "http_method",
                    "request_headers",
                    "request_body",
                    ("follow_redirects", "max_redirects"),
                    ("expected_status_min", "expected_status_max"),
                    "accepted_statuses",
                    "expected_body",
                    "body_regex",
                    ("json_path", "json_expected"),
                    ("ignore_tls_errors", "tls_warn_days"),
                ),
            },
        ),
        (
            "Public status page",
            {
                "fields": ("public", "public_name"),
                "description": "A public check is shown on /status/ by its public name, with "
                "its status, daily uptime and changes: never its target, tags or errors.",
            },
        ),
        ("Push", {"fields": ("grace",)}),
        ("DNS", {"fields": ("dns_record_type", "dns_resolver", "dns_expected")}),
        (
            "Record",
            {
                "fields": (
                    "status_display",
                    "status_since",
                    "flapping",
                    "tls_days_left",
                    "next_due_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )

    def get_fieldsets(self, request, obj=None):
        # A check not yet saved has no record to show.
        return self.fieldsets if obj is not None else self.fieldsets[:-1]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        # Only a list sorted by a history column pays for every check's figures (one grouped
        # query on the rollups); the page's own rows get theirs in changelist_view.
        ordered = request.GET.get("o", "").replace("-", "").split(".")
        sorted_by = [c for c in HISTORY_COLUMNS if str(self.list_display.index(c) + 1) in ordered]
        if sorted_by:
            figures = history_figures(None)
            queryset = queryset.annotate(
                **{f"{column}_key": sort_key(figures, column) for column in sorted_by}
            )
        return queryset

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            # The page's rows only: the response renders after this returns.
            page = changelist.result_list
            figures = history_figures([check.pk for check in page])
            for check in page:
                check.history = figures.get(check.pk, NO_HISTORY)
        return response

    @admin.display(description="status", ordering=status_rank())
    def status_display(self, obj: HealthCheck):
        badge = status_badge(obj.status)
        return format_html("{} flapping", badge) if obj.flapping else badge

    @admin.display(description="name", ordering="name")
    def name_display(self, obj: HealthCheck):
        return format_html('<span title="{}">{}</span>', masked(obj.target), obj.name)

    @admin.display(description="kind", ordering="kind")
    def kind_display(self, obj: HealthCheck) -> str:
        return obj.kind  # "tcp", not "TCP host:port": the list must fit 1280 px

    @admin.display(description="latency", ordering="last_latency_ms")
    def latency_display(self, obj: HealthCheck) -> str:
        return "-" if obj.last_latency_ms is None else f"{obj.last_latency_ms:.0f} ms"

    @admin.display(description="last checked", ordering="last_checked_at")
    def last_checked_display(self, obj: HealthCheck) -> str:
        if obj.last_checked_at is None:
            return "never"
        return ago(obj.last_checked_at)

    @admin.display(description="uptime 24 h", ordering="uptime_24h_display_key")
    def uptime_24h_display(self, obj: HealthCheck) -> str:
        return _percent(HISTORY_COLUMNS["uptime_24h_display"](_history(obj)))

    @admin.display(description="30 d", ordering="uptime_30d_display_key")
    def uptime_30d_display(self, obj: HealthCheck) -> str:
        return _percent(HISTORY_COLUMNS["uptime_30d_display"](_history(obj)))

    @admin.display(description="p95 24 h", ordering="p95_display_key")
    def p95_display(self, obj: HealthCheck) -> str:
        p95 = HISTORY_COLUMNS["p95_display"](_history(obj))
        return "-" if p95 is None else f"{p95:.0f} ms"

    @admin.display(description="last error", ordering="last_error_category")
    def last_error_display(self, obj: HealthCheck):
        if not obj.last_error_category:
            return "-"
        return format_html(
            '<span title="{}">{}</span>', obj.last_error_message, obj.last_error_category
        )

    def has_run_permission(self, request: HttpRequest) -> bool:
        """Who may "run now" (the action's ``permissions=["run"]``): ``run_healthcheck``."""
        return request.user.has_perm(RUN_CHECKS)

    @admin.action(description="Run selected checks now", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        checks = list(queryset)
        run_in_background(checks)  # a check may take its whole timeout: never in the request
        self.message_user(
            request,
            f"Running {counted(len(checks), 'check')} in the background: each result appears "
            "here and on the dashboard when it finishes (at most its timeout).",
            messages.SUCCESS,
        )

    @admin.action(description="Pause selected checks", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        switch(ids, enabled=False)
        # The rows changed without save(): announce it as any other edit is.
        announce_checks_changed()
        self.message_user(request, f"Paused {counted(len(ids), 'check')}.", messages.SUCCESS)

    @admin.action(description="Resume selected checks", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        switch(ids, enabled=True)
        announce_checks_changed()
        self.message_user(request, f"Resumed {counted(len(ids), 'check')}.", messages.SUCCESS)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        results = CheckResult.objects.filter(health_check_id=object_id).order_by("-checked_at")
        page = Paginator(results, RESULTS_PER_PAGE).get_page(request.GET.get("results_page"))
        extra_context["results_page"] = page
        changes = StateChange.objects.filter(health_check_id=object_id)
        extra_context["state_changes"] = changes[:CHANGES_SHOWN]
        check = HealthCheck.objects.filter(pk=object_id).first()
        if check is not None and check.kind == KIND_PUSH and check.push_token:
            extra_context["push_lines"] = push_lines(ping_url(request, check.push_token))
        if check is not None and check.public:
            extra_context["badge_lines"] = badge_lines(request, check)
        if check is not None:
            extra_context["alert_channels"] = channels_for(check)
            # Status, since, uptime and a week's latency, above the form.
            extra_context["history"] = page_data(check, "7d")
        return super().change_view(request, object_id, form_url, extra_context)


def _history(check: HealthCheck) -> HistoryFigures:
    return getattr(check, "history", NO_HISTORY)


def _percent(uptime: float | None) -> str:
    return "-" if uptime is None else f"{uptime:.2f} %"


class ReadOnlyAdmin(PlainActionCheckbox, DeclaredLookupsOnly, admin.ModelAdmin):
    """Log-like rows: written by the runner, read by staff."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Runner)
class RunnerAdmin(ReadOnlyAdmin):
    """Whether the runners keep up: each one's scheduling lag over its last few seconds; and
    which ones died (gone: no report for ``runners.GONE_AFTER``, with when last seen)."""

    list_display = (
        "name",
        "state_display",
        "tags",
        "seen_at",
        "stopped_at",
        "lag_p50_ms",
        "lag_p95_ms",
        "lag_max_ms",
        "probes_running",
        "probe_slots",
        "runs_skipped",
        "runs_missed",
        "results_stored",
        "results_pending",
        "results_dropped",
    )
    ordering = ("-seen_at",)

    @admin.display(description="state")
    def state_display(self, obj: Runner) -> str:
        state = runner_state(obj)
        if state == GONE:
            return f"gone: last seen {timesince(obj.seen_at)} ago"
        return state


@admin.register(CheckResult)
class CheckResultAdmin(ReadOnlyAdmin):
    list_display = (
        "checked_at",
        "health_check",
        "ok",
        "latency_display",
        "http_status",
        "error_category",
        "error_message",
    )
    # Fixed choices and a capped count: no whole-table DISTINCT or COUNT (admin_lists).
    list_filter = (CheckedFilter, "ok", CategoryFilter, "health_check")
    list_select_related = ("health_check",)
    search_fields = ("health_check__name", "error_message")
    show_full_result_count = False
    paginator = CappedPaginator

    @admin.display(description="latency", ordering="latency_ms")
    def latency_display(self, obj: CheckResult) -> str:
        return "-" if obj.latency_ms is None else f"{obj.latency_ms:.1f} ms"


@admin.register(StateChange)
class StateChangeAdmin(ReadOnlyAdmin):
    list_display = (
        "at",
        "health_check",
        "from_status",
        "to_status",
        "reason_category",
        "reason_message",
        "during_maintenance",
    )
    list_filter = ("to_status", "from_status", "during_maintenance", "health_check")
    list_select_related = ("health_check",)
    search_fields = ("health_check__name",)
    show_full_result_count = False


@admin.register(ErrorStat)
class ErrorStatAdmin(ReadOnlyAdmin):
    list_display = (
        "category",
        "severity",
        "operation",
        "endpoint",
        "count",
        "first_seen",
        "last_seen",
        "last_message",
    )
    list_filter = ("category", "severity")
    date_hierarchy = "last_seen"
    search_fields = ("operation", "endpoint", "last_message")


# Maintenance windows have their own module; importing it registers their admin.
from connections_app import maintenance_admin  # noqa: E402,F401

# So are notification channels and alerts.
from connections_app.alerts import admin as alerts_admin  # noqa: E402,F401
