"""Rollback decisions without a host (release_engine/decisions.py): Django's migration plan read,
which migrations to reverse and which cannot be, and which release a rollback goes back to."""

from __future__ import annotations

import pytest

from release_engine import codes, decisions

SHOWMIGRATIONS = """[X]  contenttypes.0001_initial
[X]  core.0001_initial
[X]  core.0002_v2_change
[ ]  core.0003_later
"""


def test_showmigrations_plan_is_read_in_order_with_what_is_applied() -> None:
    assert decisions.showmigrations_plan(SHOWMIGRATIONS) == [
        ("contenttypes.0001_initial", True), ("core.0001_initial", True), ("core.0002_v2_change", True),
        ("core.0003_later", False)]


def test_reversal_goes_back_to_the_last_migration_the_older_code_knows() -> None:
    applied = ["contenttypes.0001_initial", "core.0001_initial", "core.0002_v2_change", "extra.0001_initial"]
    known = ["contenttypes.0001_initial", "core.0001_initial"]
    assert decisions.reversal_targets(applied, known) == {"core": "0001_initial", "extra": "zero"}
    assert decisions.reversal_targets(known, known) == {}


def test_irreversible_migrations_are_named_from_djangos_plan() -> None:
    plan = """Planned operations:
core.0004_data
    Raw Python operation -> IRREVERSIBLE
core.0003_field
    Undo Add field tags to check
"""
    assert decisions.irreversible_migrations(plan) == ["core.0004_data"]
    assert decisions.irreversible_migrations("Planned operations:\n  No planned migration operations.\n") == []


def test_rollback_target_is_the_release_live_before_or_the_one_asked_for() -> None:
    a, b, c = ("a" * 40 + "-k", "b" * 40 + "-k", "c" * 40 + "-k")
    history = [{"release": a}, {"release": b}]
    assert decisions.rollback_target(history, [a, b, c], c, None) == b
    assert decisions.rollback_target(history, [a, c], c, None) == a  # b was pruned
    assert decisions.rollback_target(history, [a, b, c], c, "aaaa") == a
    with pytest.raises(codes.ReleaseFailed, match="no kept release matches 'ffff'"):
        decisions.rollback_target(history, [a, b, c], c, "ffff")
    with pytest.raises(codes.ReleaseFailed, match="no release that was live before"):
        decisions.rollback_target([], [c], c, None)
