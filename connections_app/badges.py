"""SVG badges in the look of shields.io: a grey label on the left, a coloured value on the
right, for a public check's status and its 30-day uptime. Pure functions: text in, SVG out.

Text widths are estimated (Verdana 11 px averages about 7 px a character) and pinned with
``textLength``, so a badge looks the same whatever fonts the viewer has.
"""

from __future__ import annotations

import zlib
from html import escape

from connections_app.models import DEGRADED, DOWN, MAINTENANCE, PAUSED, UNKNOWN, UP

GREEN = "#4c1"
YELLOWGREEN = "#a4a61d"
YELLOW = "#dfb317"
ORANGE = "#fe7d37"
RED = "#e05d44"
BLUE = "#007ec6"
GREY = "#9f9f9f"
LABEL_GREY = "#555"

STATUS_COLOURS = {
    UP: GREEN,
    DEGRADED: YELLOW,
    DOWN: RED,
    MAINTENANCE: BLUE,
    PAUSED: GREY,
    UNKNOWN: GREY,
}
#: The longest label drawn: a public name is at most 100 characters, a badge stays readable.
MAX_LABEL = 40
CHAR_WIDTH = 7
PADDING = 10


def status_badge(label: str, status: str) -> str:
    return badge(label, status, STATUS_COLOURS.get(status, GREY))


def uptime_badge(label: str, percent: float | None, text: str) -> str:
    return badge(label, text, uptime_colour(percent))


def uptime_colour(percent: float | None) -> str:
    if percent is None:
        return GREY
    for floor, colour in ((99.9, GREEN), (99.0, YELLOWGREEN), (95.0, YELLOW), (90.0, ORANGE)):
        if percent >= floor:
            return colour
    return RED


def badge(label: str, value: str, colour: str) -> str:
    """A two-part badge: ``label`` on grey, ``value`` on ``colour``."""
    if len(label) > MAX_LABEL:
        label = label[: MAX_LABEL - 1] + "…"
    left, right = _width(label), _width(value)
    total = left + right
    label_x, value_x = left / 2, left + right / 2
    label_text, value_text = escape(label), escape(value)
    # Ids of its own: a page that inlines several badges must not clip one by another's shape.
    uid = f"{zlib.crc32(f'{label}|{value}|{colour}'.encode()):08x}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{label_text}: {value_text}"><title>{label_text}: {value_text}</title>'
        f'<linearGradient id="s{uid}" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
        'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r{uid}"><rect width="{total}" height="20" rx="3" fill="#fff"/>'
        f'</clipPath><g clip-path="url(#r{uid})">'
        f'<rect width="{left}" height="20" fill="{LABEL_GREY}"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        f'<rect width="{total}" height="20" fill="url(#s{uid})"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,'
        'sans-serif" font-size="11">'
        f"{_text(label_text, label_x, left)}{_text(value_text, value_x, right)}</g></svg>"
    )


def _width(text: str) -> int:
    return len(text) * CHAR_WIDTH + PADDING


def _text(text: str, x: float, width: int) -> str:
    length = width - PADDING
    # A shadow one pixel down, then the text: shields' look, readable on any colour.
    return (
        f'<text x="{x}" y="15" fill="#010101" fill-opacity=".3" textLength="{length}" '
        f'lengthAdjust="spacingAndGlyphs">{text}</text>'
        f'<text x="{x}" y="14" textLength="{length}" lengthAdjust="spacingAndGlyphs">'
        f"{text}</text>"
    )
