"""What the watch already said: one root-only record of the keys of the conditions it alerted
about. A condition alerts when its key is new, never again while it lasts; a key that is gone
(the condition passed) is forgotten, so its return alerts again."""

from __future__ import annotations

from pathlib import Path

from engine_common.safefs import read_record, write_record

from .checks import Condition


def told(state: Path) -> dict[str, float]:
    """key -> when it was first told."""
    record = read_record(state) or {}
    keys = record.get("told", {})
    return {str(k): float(v) for k, v in keys.items()} if isinstance(keys, dict) else {}


def new_conditions(conditions: list[Condition], before: dict[str, float]) -> list[Condition]:
    """The conditions not told yet (each key once, in order)."""
    seen: set[str] = set()
    out = []
    for c in conditions:
        if c.key not in before and c.key not in seen:
            out.append(c)
        seen.add(c.key)
    return out


def remember(state: Path, conditions: list[Condition], before: dict[str, float], sent: dict[str, float]) -> None:
    """Keep the keys still present (told before, or sent now); forget the rest."""
    present = {c.key for c in conditions}
    keep = {k: v for k, v in before.items() if k in present}
    keep.update({k: v for k, v in sent.items() if k in present})
    write_record(state, {"told": keep})
