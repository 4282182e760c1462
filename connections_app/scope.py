"""What a maintenance window or a notification channel covers: every check, the checks chosen
for it, or the checks with one of its tags."""

from __future__ import annotations

from collections.abc import Iterable


def covers(
    all_checks: bool,
    chosen: Iterable[int],
    scope_tags: Iterable[str],
    check_id: int,
    check_tags: Iterable[str],
) -> bool:
    """Whether a scope covers the check. ``chosen`` is read last (it may be a query)."""
    if all_checks:
        return True
    if set(scope_tags) & set(check_tags):
        return True
    return check_id in set(chosen)


def scope_text(all_checks: bool, names: Iterable[str], tags: Iterable[str]) -> str:
    """``all checks``, or up to three chosen checks' names and the tags, in words."""
    if all_checks:
        return "all checks"
    parts = []
    names = sorted(names)
    if names:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        parts.append(", ".join(names[:3]) + more)
    tags = sorted(tags)
    if tags:
        parts.append(f"{'tag' if len(tags) == 1 else 'tags'} {', '.join(tags)}")
    return "; ".join(parts) or "nothing"
