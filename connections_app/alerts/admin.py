"""Channels and alerts in the admin; registered from ``connections_app/admin.py``.

A channel's target is a secret (Slack and Discord URLs hold a token): after it is saved it is
never shown again, only its scheme, host and port (``shown_target``). The edit form's target
field starts empty: left empty it keeps the stored target, typed it replaces it.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from connections_app.admin import ReadOnlyAdmin
from connections_app.admin_lists import PlainActionCheckbox
from connections_app.admin_lookups import DeclaredLookupsOnly
from connections_app.alerts.enqueue import enqueue_tests
from connections_app.alerts.models import FAILED, PENDING, SENDING, Alert, NotificationChannel
from connections_app.cli import counted
from connections_app.scope import scope_text

TRANSITIONS = (
    ("on_down", "down"),
    ("on_degraded", "degraded"),
    ("on_recovered", "recovered"),
    ("on_flapping", "flapping"),
)


class NotificationChannelForm(forms.ModelForm):
    class Meta:
        model = NotificationChannel
        fields = "__all__"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            field = self.fields["target"]
            field.required = False
            self.initial["target"] = ""
            field.help_text = (
                f"Stored: {self.instance.shown_target} (never shown whole: it may hold a "
                "token). Leave empty to keep it; type a new target to replace it."
            )

    def clean_target(self) -> str:
        target = (self.cleaned_data.get("target") or "").strip()
        if not target and self.instance.pk:
            return self.instance.target
        return target


@admin.register(NotificationChannel)
class NotificationChannelAdmin(PlainActionCheckbox, DeclaredLookupsOnly, admin.ModelAdmin):
    form = NotificationChannelForm
    list_display = (
        "name",
        "kind",
        "target_display",
        "scope_display",
        "transitions_display",
        "remind_every",
        "enabled",
        "failed_display",
    )
    list_filter = ("kind", "enabled")
    search_fields = ("name", "tags")  # never the target: a search would reveal its token
    filter_horizontal = ("checks",)
    actions = ("send_test_alert",)
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "kind", "target", "enabled")}),
        ("Applies to", {"fields": ("all_checks", "checks", "tags")}),
        (
            "Sends",
            {"fields": ("on_down", "on_degraded", "on_recovered", "on_flapping", "remind_every")},
        ),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        failed = Count("alerts", filter=Q(alerts__status=FAILED))
        return super().get_queryset(request).prefetch_related("checks").annotate(failed=failed)

    @admin.display(description="target")
    def target_display(self, obj: NotificationChannel) -> str:
        return obj.shown_target

    @admin.display(description="applies to")
    def scope_display(self, obj: NotificationChannel) -> str:
        if obj.all_checks:
            return "all checks"
        tags = [t for t in obj.tags.split(",") if t]
        return scope_text(False, (c.name for c in obj.checks.all()), tags)

    @admin.display(description="sends")
    def transitions_display(self, obj: NotificationChannel) -> str:
        return ", ".join(word for field, word in TRANSITIONS if getattr(obj, field)) or "-"

    @admin.display(description="failed alerts", ordering="failed")
    def failed_display(self, obj: NotificationChannel) -> int:
        return obj.failed

    @admin.action(description="Send a test alert", permissions=["change"])
    def send_test_alert(self, request: HttpRequest, queryset: QuerySet) -> None:
        made = enqueue_tests(queryset.values_list("pk", flat=True))
        self.message_user(
            request,
            f"Queued {counted(made, 'test alert')}: the runner (runchecks or serve) sends it "
            "within a few seconds; see Alerts for how it went.",
            messages.SUCCESS,
        )


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "kind",
        "status",
        "channel",
        "health_check",
        "attempts",
        "next_attempt_at",
        "response_status",
        "last_error",
        "sent_at",
    )
    list_filter = ("status", "kind", "channel")
    list_select_related = ("channel", "health_check")
    search_fields = ("health_check__name", "channel__name")
    show_full_result_count = False
    actions = ("send_again",)

    def has_resend_permission(self, request: HttpRequest) -> bool:
        """Who may "send again", which writes the alert row: Django's ``change_alert``
        permission (the admin's own change permission is off: the rows stay read-only forms)."""
        return request.user.has_perm(f"{self.opts.app_label}.change_alert")

    @admin.action(description="Send again", permissions=["resend"])
    def send_again(self, request: HttpRequest, queryset: QuerySet) -> None:
        # Not one being sent now: its runner still holds the claim.
        again = queryset.exclude(status=SENDING).update(
            status=PENDING, attempts=0, next_attempt_at=timezone.now(), claimed_until=None
        )
        self.message_user(request, f"Queued {counted(again, 'alert')} to send again.")
