"""URLs for tests/test_http_hardening.py: the project's own, and one view that always fails."""

from django.urls import path

from project.urls import urlpatterns as project_urls


def broken(request):
    raise RuntimeError("the view broke with password=Broken-Pw-1")


urlpatterns = [path("broken/", broken), *project_urls]
