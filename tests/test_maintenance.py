"""Maintenance windows: when they are active (an explicit clock, never a sleep), to which checks
they apply, how they are validated, and the admin pages."""

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from connections_app.maintenance import (
    ONCE,
    WEEKLY,
    MaintenanceWindow,
    active_windows,
    checks_in_maintenance,
    days_text,
    duration_text,
)
from connections_app.models import HealthCheck

BERLIN = ZoneInfo("Europe/Berlin")
SATURDAY, SUNDAY, MONDAY = 5, 6, 7  # of December 2026


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def once(start: datetime, end: datetime, **fields) -> MaintenanceWindow:
    fields = {"name": "once", "all_checks": True, "time_zone": "UTC"} | fields
    return MaintenanceWindow(schedule=ONCE, starts_at=start, ends_at=end, **fields)


def weekly(days: str, start: time, minutes: int, zone: str = "UTC", **fields):
    fields = {"name": "weekly", "all_checks": True} | fields
    return MaintenanceWindow(
        schedule=WEEKLY,
        weekdays=days,
        start_time=start,
        duration_minutes=minutes,
        time_zone=zone,
        **fields,
    )


# -- one-off ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "active"),
    [
        (utc(2026, 12, 1, 1, 59, 59), False),
        (utc(2026, 12, 1, 2, 0), True),  # the start is inside
        (utc(2026, 12, 1, 3, 0), True),
        (utc(2026, 12, 1, 3, 59, 59), True),
        (utc(2026, 12, 1, 4, 0), False),  # the end is the first moment after
        (utc(2026, 12, 2, 3, 0), False),
        (berlin(2026, 12, 1, 3, 30), True),  # 02:30 UTC, written in another zone
        (berlin(2026, 12, 1, 5, 0), False),  # 04:00 UTC
    ],
)
def test_one_off_window_is_active_from_its_start_to_before_its_end(at, active):
    window = once(utc(2026, 12, 1, 2, 0), utc(2026, 12, 1, 4, 0))
    assert window.is_active(at) is active


def test_a_naive_moment_is_refused_rather_than_guessed():
    window = once(utc(2026, 12, 1, 2, 0), utc(2026, 12, 1, 4, 0))
    with pytest.raises(ValueError, match="aware"):
        window.is_active(datetime(2026, 12, 1, 3, 0))


# -- weekly ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "active"),
    [
        (berlin(2026, 12, SATURDAY, 23, 30), False),  # the right hour, the wrong day
        (berlin(2026, 12, SUNDAY, 22, 59), False),
        (berlin(2026, 12, SUNDAY, 23, 0), True),
        (berlin(2026, 12, SUNDAY, 23, 59), True),
        (berlin(2026, 12, MONDAY, 0, 0), True),  # past midnight and into the next week
        (berlin(2026, 12, MONDAY, 0, 59), True),
        (berlin(2026, 12, MONDAY, 1, 0), False),
        (berlin(2026, 12, MONDAY, 23, 30), False),
        (berlin(2026, 12, SUNDAY + 7, 23, 30), True),  # and again a week later
    ],
)
def test_weekly_window_from_sunday_night_into_monday(at, active):
    window = weekly("6", time(23, 0), 120, "Europe/Berlin")
    assert window.is_active(at) is active


def test_weekly_start_time_is_local_to_the_window_zone():
    in_berlin = weekly("6", time(23, 0), 120, "Europe/Berlin")
    in_utc = weekly("6", time(23, 0), 120, "UTC")
    at = utc(2026, 12, SUNDAY, 22, 30)  # 23:30 in Berlin (CET, UTC+1)
    assert in_berlin.is_active(at) and not in_utc.is_active(at)
    at = utc(2026, 12, SUNDAY, 23, 30)
    assert in_berlin.is_active(at) and in_utc.is_active(at)
    at = utc(2026, 12, MONDAY, 0, 30)  # 01:30 in Berlin: its window is over
    assert not in_berlin.is_active(at) and in_utc.is_active(at)


@pytest.mark.parametrize(
    ("at", "active"),
    [
        (utc(2026, 12, 8, 1, 30), True),  # Tuesday 02:30 CET
        (utc(2026, 12, 8, 2, 30), False),  # Tuesday 03:30 CET
        (utc(2026, 12, SATURDAY, 1, 30), False),
        (utc(2026, 7, 7, 0, 30), True),  # Tuesday 02:30 CEST, in summer time
        (utc(2026, 7, 7, 1, 30), False),
    ],
)
def test_weekday_window_on_the_right_days_and_hours_in_winter_and_summer(at, active):
    window = weekly("01234", time(2, 0), 60, "Europe/Berlin")
    assert window.is_active(at) is active


def test_a_window_longer_than_a_day_gives_the_latest_occurrence():
    window = weekly("0123456", time(12, 0), 36 * 60)
    start, end = window.occurrence(utc(2026, 12, 2, 18, 0))  # inside two occurrences
    assert (start, end) == (utc(2026, 12, 2, 12, 0), utc(2026, 12, 4, 0, 0))


def test_a_seven_day_window_is_always_active():
    window = weekly("3", time(9, 15), 7 * 24 * 60, "Europe/Berlin")
    moment = utc(2026, 12, 1, 0, 0)
    for _ in range(7 * 24):
        assert window.is_active(moment)
        moment += timedelta(hours=1)


def test_spring_forward_the_duration_is_real_time():
    # Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST.
    window = weekly("6", time(1, 0), 180, "Europe/Berlin")
    start, end = window.occurrence(utc(2026, 3, 29, 1, 0))
    assert start == utc(2026, 3, 29, 0, 0)  # 01:00 CET
    assert end == utc(2026, 3, 29, 3, 0)  # three real hours: 05:00 CEST on the wall
    assert window.is_active(utc(2026, 3, 29, 2, 59))
    assert not window.is_active(utc(2026, 3, 29, 3, 0))


def test_a_start_time_the_clocks_skip_begins_as_if_they_had_not_jumped():
    window = weekly("6", time(2, 30), 60, "Europe/Berlin")  # 02:30 does not exist that night
    start, end = window.occurrence(utc(2026, 3, 29, 2, 0))
    assert start == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    assert end == utc(2026, 3, 29, 2, 30)
    assert not window.is_active(utc(2026, 3, 29, 1, 29))


def test_a_start_time_that_occurs_twice_begins_at_the_first():
    # Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice.
    window = weekly("6", time(2, 30), 60, "Europe/Berlin")
    start, end = window.occurrence(utc(2026, 10, 25, 1, 0))
    assert (start, end) == (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30))


@pytest.mark.parametrize(
    ("zone", "change_day"),
    [
        ("Europe/Berlin", utc(2026, 3, 29)),
        ("Europe/Berlin", utc(2026, 10, 25)),
        ("America/New_York", utc(2026, 3, 8)),
        ("America/New_York", utc(2026, 11, 1)),
        ("Australia/Lord_Howe", utc(2026, 4, 5)),  # a 30-minute change
        ("Australia/Lord_Howe", utc(2026, 10, 4)),
    ],
)
def test_a_daily_hour_lasts_an_hour_every_day_across_a_dst_change(zone, change_day):
    window = weekly("0123456", time(2, 30), 60, zone)
    step = timedelta(minutes=15)
    moment, end = change_day - timedelta(hours=36), change_day + timedelta(hours=60)
    active = 0
    while moment < end:
        active += window.is_active(moment)
        moment += step
    assert active == 4 * 4  # the four local days starting in the range, four quarters each


# -- in words --------------------------------------------------------------------------------


def test_schedules_in_words():
    assert (
        weekly("6", time(23, 0), 120, "Europe/Paris").schedule_text()
        == "weekly Sun 23:00 Europe/Paris for 2 h"
    )
    assert (
        once(utc(2026, 12, 1, 2, 0), utc(2026, 12, 1, 4, 0)).schedule_text()
        == "once 2026-12-01 02:00–04:00 UTC"
    )
    paris = once(utc(2026, 12, 1, 22, 0), utc(2026, 12, 2, 1, 0), time_zone="Europe/Paris")
    assert paris.schedule_text() == "once 2026-12-01 23:00 – 2026-12-02 02:00 Europe/Paris"
    assert days_text("0123456") == "every day"
    assert days_text("01234") == "Mon–Fri"
    assert days_text("0156") == "Mon, Tue, Sat, Sun"
    assert days_text("024") == "Mon, Wed, Fri"
    assert duration_text(90) == "1 h 30 min"
    assert duration_text(1500) == "1 day 1 h"


# -- scope -----------------------------------------------------------------------------------


@pytest.fixture
def checks(db):
    HealthCheck.objects.all().delete()
    make = HealthCheck.objects.create
    return {
        "api": make(name="api", target="http://127.0.0.1:9/", tags="prod,api"),
        "db": make(name="db", kind="tcp", target="127.0.0.1:5432", tags="prod,db"),
        "cache": make(name="cache", kind="tcp", target="127.0.0.1:6379", tags="staging"),
    }


NOW = utc(2026, 12, 1, 3, 0)


def save(window: MaintenanceWindow, checks=()) -> MaintenanceWindow:
    window.save()
    window.checks.set(checks)
    return window


def pairs(checks: dict) -> list[tuple[int, str]]:
    # Tags as stored: the function accepts the string as well as a list.
    return [(c.pk, c.tags) for c in checks.values()]


def in_maintenance(checks: dict, at: datetime = NOW) -> set[str]:
    names = {c.pk: name for name, c in checks.items()}
    return {names[pk] for pk in checks_in_maintenance(pairs(checks), at)}


def during(**fields) -> MaintenanceWindow:
    fields = {"all_checks": False} | fields
    return once(utc(2026, 12, 1, 2, 0), utc(2026, 12, 1, 4, 0), **fields)


def test_no_window_no_check_in_maintenance(checks):
    assert in_maintenance(checks) == set()


def test_a_window_for_all_checks(checks):
    save(during(all_checks=True))
    assert in_maintenance(checks) == {"api", "db", "cache"}
    assert in_maintenance(checks, at=utc(2026, 12, 1, 5, 0)) == set()


def test_a_window_for_chosen_checks(checks):
    window = save(during(), [checks["api"], checks["cache"]])
    assert in_maintenance(checks) == {"api", "cache"}
    assert window.applies_to(checks["api"].pk, "") and not window.applies_to(checks["db"].pk, "")


def test_a_window_for_tags_matches_any_of_them(checks):
    window = save(during(tags="DB, staging"))
    assert window.applies_to(0, ["db"]) and window.applies_to(0, "x,STAGING")
    assert not window.applies_to(0, "prod")
    assert in_maintenance(checks) == {"db", "cache"}
    tags_as_lists = [(c.pk, c.tag_list) for c in checks.values()]
    assert checks_in_maintenance(tags_as_lists, NOW) == {checks["db"].pk, checks["cache"].pk}


def test_windows_add_up_and_disabled_or_inactive_ones_do_not_count(checks):
    save(during(tags="api"))
    save(during(), [checks["db"]])
    save(during(tags="staging", enabled=False))
    save(once(utc(2026, 12, 1, 4, 0), utc(2026, 12, 1, 6, 0), tags="staging", all_checks=False))
    save(weekly("1", time(2, 0), 120, tags="staging", all_checks=False))  # NOW is a Tuesday
    assert in_maintenance(checks) == {"api", "db", "cache"}
    assert in_maintenance(checks, at=utc(2026, 12, 1, 5, 0)) == {"cache"}
    assert in_maintenance(checks, at=utc(2026, 12, 2, 3, 0)) == set()


def test_one_read_per_batch_whatever_the_number_of_checks(checks, django_assert_num_queries):
    many = [(pk, "prod") for pk in range(1, 1001)]
    with django_assert_num_queries(1):  # no active window: the windows only
        assert checks_in_maintenance(many, NOW) == set()
    save(during(tags="nothing"), [checks["api"]])
    save(during(tags="prod"))
    with django_assert_num_queries(2):  # the active windows, then all their checks at once
        assert len(checks_in_maintenance(many, NOW)) == 1000
    windows = active_windows(NOW)
    with django_assert_num_queries(0):  # windows read once, used for many batches
        assert checks_in_maintenance(pairs(checks), NOW, windows) == {
            checks["api"].pk,
            checks["db"].pk,
        }
        assert checks_in_maintenance(pairs(checks), utc(2026, 12, 1, 5, 0), windows) == set()


def test_active_windows_lists_the_enabled_active_ones(checks):
    first = save(during(all_checks=True, name="first"))
    save(during(all_checks=True, enabled=False, name="disabled"))
    save(once(utc(2026, 11, 1, 2, 0), utc(2026, 11, 1, 4, 0), name="over"))
    weekly_now = save(weekly("1", time(2, 0), 120, name="tuesdays"))
    assert {w.name for w in active_windows(NOW)} == {first.name, weekly_now.name}
    assert active_windows(utc(2026, 12, 2, 3, 0)) == []


# -- validation ------------------------------------------------------------------------------


def errors_of(window: MaintenanceWindow) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        window.full_clean()
    errors = caught.value.message_dict
    assert all(len(messages) == 1 for messages in errors.values()), errors
    return {field: messages[0] for field, messages in errors.items()}


@pytest.mark.django_db
def test_a_one_off_window_needs_both_ends():
    errors = errors_of(once(None, None))
    assert errors == {
        "starts_at": "A one-off window needs a start.",
        "ends_at": "A one-off window needs an end.",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("end", [utc(2026, 12, 1, 2, 0), utc(2026, 12, 1, 1, 0)])
def test_a_one_off_window_ends_after_it_starts(end):
    errors = errors_of(once(utc(2026, 12, 1, 2, 0), end))
    assert errors == {"ends_at": "The end must be after the start."}


@pytest.mark.django_db
def test_a_weekly_window_needs_days_a_start_time_and_a_duration():
    errors = errors_of(weekly("", None, None))
    assert set(errors) == {"weekdays", "start_time", "duration_minutes"}
    assert "at least one day" in errors["weekdays"]
    assert "start time" in errors["start_time"]
    assert "duration" in errors["duration_minutes"]


@pytest.mark.django_db
@pytest.mark.parametrize("days", ["7", "Mon", "0x"])
def test_days_are_digits_zero_to_six(days):
    assert "0 (Monday) to 6 (Sunday)" in errors_of(weekly(days, time(2, 0), 60))["weekdays"]


@pytest.mark.django_db
@pytest.mark.parametrize("minutes", [0, 7 * 24 * 60 + 1, -5])
def test_a_duration_from_one_minute_to_seven_days(minutes):
    errors = errors_of(weekly("0", time(2, 0), minutes))
    assert list(errors) == ["duration_minutes"]  # -5: the field's own message, not two


@pytest.mark.django_db
def test_an_unknown_time_zone_is_named():
    errors = errors_of(weekly("0", time(2, 0), 60, "Mars/Olympus_Mons"))
    assert errors == {
        "time_zone": "Unknown time zone 'Mars/Olympus_Mons': use an IANA name such as "
        "Europe/Berlin or UTC."
    }
    assert list(errors_of(once(NOW, NOW + timedelta(hours=1), time_zone="../etc"))) == ["time_zone"]


@pytest.mark.django_db
def test_a_window_must_apply_to_something():
    errors = errors_of(weekly("0", time(2, 0), 60, all_checks=False, tags=" , "))
    assert list(errors) == ["checks"]
    assert "all checks, choose some checks or give some tags" in errors["checks"]


@pytest.mark.django_db
def test_a_valid_window_is_normalised():
    window = weekly("6, 0,6", time(2, 0), 60, "Europe/Berlin", all_checks=False, tags="DB api,db")
    window.full_clean()
    assert window.weekdays == "06"
    assert window.tags == "api,db"


def test_a_bad_zone_stored_without_validation_does_not_stop_the_runner():
    window = weekly("6", time(23, 0), 60, "Nowhere/Special")
    assert window.is_active(utc(2026, 12, SUNDAY, 23, 30))  # read as UTC


# -- admin -----------------------------------------------------------------------------------

CHANGELIST = reverse("admin:connections_app_maintenancewindow_changelist")
ADD = reverse("admin:connections_app_maintenancewindow_add")


def form_data(**fields) -> dict:
    data = {
        "name": "nightly",
        "enabled": "on",
        "schedule": WEEKLY,
        "time_zone": "Europe/Paris",
        "weekdays": ["6"],
        "start_time": "23:00",
        "duration_minutes": "120",
        "tags": "",
        "note": "",
    }
    return data | fields


def test_the_add_page_renders(admin_client, checks):
    page = admin_client.get(ADD).content.decode()
    assert 'name="weekdays"' in page and 'value="6"' in page
    assert "selectfilter" in page  # filter_horizontal for the checks
    assert "api" in page and "cache" in page


def test_adding_a_weekly_window_for_chosen_checks(admin_client, checks):
    data = form_data(checks=[checks["api"].pk, checks["db"].pk])
    response = admin_client.post(ADD, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    window = MaintenanceWindow.objects.get()
    assert (window.weekdays, window.start_time, window.time_zone) == ("6", time(23), "Europe/Paris")
    assert {c.name for c in window.checks.all()} == {"api", "db"}


def test_one_off_times_are_typed_in_the_window_zone(admin_client, checks):
    data = form_data(
        schedule=ONCE,
        starts_at_0="2026-12-01",
        starts_at_1="02:00",
        ends_at_0="2026-12-01",
        ends_at_1="04:00",
        all_checks="on",
    )
    assert admin_client.post(ADD, data).status_code == 302
    window = MaintenanceWindow.objects.get()
    assert window.starts_at == utc(2026, 12, 1, 1, 0)  # 02:00 in Paris (CET)
    change = reverse("admin:connections_app_maintenancewindow_change", args=[window.pk])
    assert 'value="02:00:00"' in admin_client.get(change).content.decode()


def test_the_form_says_what_is_missing(admin_client, checks):
    data = form_data(weekdays=[], duration_minutes="0", time_zone="Mars/Base")
    response = admin_client.post(ADD, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"weekdays", "duration_minutes", "time_zone", "checks"}
    assert all(len(messages) == 1 for messages in errors.values())
    assert not MaintenanceWindow.objects.exists()


def test_the_list_shows_schedules_scope_and_what_is_active_now(admin_client, checks):
    now = timezone.now()
    save(
        once(now - timedelta(hours=1), now + timedelta(hours=1), name="now", all_checks=False),
        [checks["api"]],
    )
    save(once(now - timedelta(hours=1), now + timedelta(hours=1), name="off", enabled=False))
    save(weekly("6", time(23, 0), 120, "Europe/Paris", name="sundays", all_checks=False, tags="db"))
    save(once(utc(2026, 12, 1, 2, 0), utc(2026, 12, 1, 4, 0), name="planned"))
    page = admin_client.get(CHANGELIST).content.decode()
    assert "weekly Sun 23:00 Europe/Paris for 2 h" in page
    assert "once 2026-12-01 02:00–04:00 UTC" in page
    rows = {
        re.search(r'field-name"><a [^>]*>([^<]+)<', row).group(1): row
        for row in page.partition("<tbody>")[2].partition("</tbody>")[0].split("<tr")[1:]
    }
    active = {name: 'alt="True"' in row.split("field-active_now")[1] for name, row in rows.items()}
    assert active["now"] is True and active["off"] is False
    assert active["sundays"] is MaintenanceWindow.objects.get(name="sundays").is_active(now)
    assert active["planned"] is (utc(2026, 12, 1, 2) <= now < utc(2026, 12, 1, 4))
    assert 'field-scope_display">api<' in rows["now"]
    assert "tag db" in rows["sundays"]
    assert "all checks" in rows["planned"]


def test_the_list_reads_the_checks_once(admin_client, checks, django_assert_max_num_queries):
    for n in range(10):
        save(during(name=f"w{n}"), list(checks.values()))
    admin_client.get(CHANGELIST)  # warm up the session and the user
    with django_assert_max_num_queries(8):
        assert admin_client.get(CHANGELIST).status_code == 200
