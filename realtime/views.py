"""The dashboard page: staff only; its data arrives over the WebSocket."""

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render

from realtime.protocol import SCHEMA_VERSION


@staff_member_required
def dashboard(request):
    return render(request, "dashboard.html", {"schema_version": SCHEMA_VERSION})
