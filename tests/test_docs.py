"""What the help and the README say matches the code: defaults, storyboard keys, the events table."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from conftest import cli

from framereel import events
from framereel.backends.common import recommended_settings
from framereel.backends.resolve import DEMO_MODEL_DIR
from framereel.plan import RunPlan
from framereel.storyboard import ENTRY_KEYS, FRAME_KEYS, TOP_LEVEL_KEYS

README = Path(__file__).resolve().parent.parent / "README.md"


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_steps_and_guidance_help_give_the_demo_models_own_defaults():
    demo = recommended_settings(DEMO_MODEL_DIR)
    assert demo["guidance"] == 2 and demo["steps"] == 15  # the values the demo model was trained for
    make = _flat(cli("make", "--help", check=True).stdout)
    assert "7.5 for SD 1.x, 2 for the demo model" in make and "25 for SD 1.x, 15 for the demo model" in make


def test_the_top_level_help_lists_every_storyboard_key():
    top = _flat(cli("--help", check=True).stdout)
    assert set(FRAME_KEYS) | {"lora"} <= set(ENTRY_KEYS)
    for key in (*ENTRY_KEYS, *TOP_LEVEL_KEYS, "clip", "morph", "init", "init_video", "travel"):
        assert re.search(rf"\b{key}\b", top), key


def _readme_events() -> dict[str, str]:
    text = README.read_text().split("### Events (`--json`)", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (.*) \|$", text, flags=re.M)
    return dict(rows)


def test_the_readme_events_table_lists_every_event_and_its_fields():
    classes = [c for _, c in inspect.getmembers(events, inspect.isclass)
               if issubclass(c, events.Event) and c is not events.Event]
    assert set(classes) == set(events.EVENT_TYPES)
    table = _readme_events()
    plan = RunPlan(total=1).as_dict()
    assert plan["v"] == events.EVENTS_VERSION
    documented = {c.name: events.event_fields(c) for c in events.EVENT_TYPES}
    documented[plan["event"]] = [k for k in plan if k not in ("event", "v")]
    assert set(table) == set(documented)
    for name, fields in documented.items():
        for field in fields:
            assert re.search(rf"\b{field}\b", table[name]), (name, field)
