"""Maintenance windows in the admin: create them, and list them with their schedule in words
and whether each is active now. Registered from admin.py."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from connections_app.admin_lists import PlainActionCheckbox
from connections_app.admin_lookups import DeclaredLookupsOnly
from connections_app.maintenance import (
    DAY_NAMES,
    MaintenanceWindow,
    default_time_zone,
    zone_error,
)
from connections_app.models import HealthCheck


class MaintenanceWindowForm(forms.ModelForm):
    weekdays = forms.MultipleChoiceField(
        choices=[(str(number), name) for number, name in enumerate(DAY_NAMES)],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Days",
        help_text="Weekly windows.",
    )

    class Meta:
        model = MaintenanceWindow
        fields = "__all__"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["weekdays"] = list(self.instance.weekdays)

    def clean_weekdays(self) -> str:
        return "".join(sorted(self.cleaned_data["weekdays"]))

    def clean(self) -> dict:
        cleaned = super().clean()
        # The model judges whether the window applies to anything, before the form saves the
        # many-to-many: it is told what was chosen.
        if "checks" in cleaned:
            self.instance._chosen_checks = list(cleaned["checks"])
        return cleaned


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(PlainActionCheckbox, DeclaredLookupsOnly, admin.ModelAdmin):
    form = MaintenanceWindowForm
    list_display = ("name", "schedule_display", "scope_display", "enabled", "active_now")
    list_filter = ("enabled", "schedule")
    search_fields = ("name", "note", "tags")
    filter_horizontal = ("checks",)
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "enabled", "note", "schedule", "time_zone")}),
        (
            "One-off",
            {
                "fields": ("starts_at", "ends_at"),
                "description": "Dates and times in the window's time zone.",
            },
        ),
        ("Weekly", {"fields": ("weekdays", "start_time", "duration_minutes")}),
        ("Applies to", {"fields": ("all_checks", "checks", "tags")}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The list names each window's checks: one query for all rows, not one per row.
        checks = HealthCheck.objects.only("pk", "name")
        return super().get_queryset(request).prefetch_related(Prefetch("checks", queryset=checks))

    @admin.display(description="schedule")
    def schedule_display(self, obj: MaintenanceWindow) -> str:
        return obj.schedule_text()

    @admin.display(description="applies to")
    def scope_display(self, obj: MaintenanceWindow) -> str:
        return obj.scope_text()

    @admin.display(description="active now", boolean=True)
    def active_now(self, obj: MaintenanceWindow) -> bool:
        return obj.enabled and obj.is_active(timezone.now())

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # One-off times are typed and shown in the window's own time zone, as the list shows
        # them. The page is rendered here: a template response renders after this returns.
        with timezone.override(self._form_zone(request, object_id)):
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if hasattr(response, "render") and not response.is_rendered:
                response.render()
        return response

    def _form_zone(self, request: HttpRequest, object_id: str | None) -> ZoneInfo:
        name = request.POST.get("time_zone", "").strip()
        if not name and object_id:
            window = self.get_object(request, unquote(object_id))
            name = window.time_zone if window else ""
        # An unknown name is the form's to refuse: meanwhile the times read as the default's.
        if not name or zone_error(name):
            name = default_time_zone()
        return ZoneInfo(name)
