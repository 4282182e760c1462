"""``gc_tuning.settle_long_lived``: what runchecks does to the collector at start. In a child
process: freezing is for the life of a process, and must not change the test runner's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from connections_app.gc_tuning import THRESHOLDS

CHILD = """
import gc, json
from connections_app.gc_tuning import settle_long_lived
settle_long_lived()
print(json.dumps({"thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "oldest": len(gc.get_objects(generation=2))}))
"""


def test_it_freezes_what_is_alive_and_collects_less_often():
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=root, capture_output=True,
                         text=True, check=True, timeout=60)  # fmt: skip
    figures = json.loads(out.stdout)
    assert tuple(figures["thresholds"]) == THRESHOLDS
    assert figures["frozen"] > 1000  # the interpreter's and the imported modules' objects
    # A full collection now walks what was made after start only.
    assert figures["oldest"] < figures["frozen"] / 10
