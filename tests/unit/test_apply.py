"""`make apply` (cli/apply.py) without a host: who is asked before a change, and when."""

from __future__ import annotations


def test_apply_asks_only_on_production_and_only_a_person_at_a_terminal_can_say_yes() -> None:
    from cli.apply import confirmed

    def never(prompt: str) -> str:
        raise AssertionError("asked outside production or with --yes")

    assert confirmed(False, False, ask=never, interactive=False)
    assert confirmed(True, True, ask=never, interactive=False)
    assert not confirmed(True, False, ask=never, interactive=False)  # CI without CONFIRM=yes: refused
    assert confirmed(True, False, ask=lambda prompt: "apply\n", interactive=True)
    assert not confirmed(True, False, ask=lambda prompt: "y", interactive=True)
