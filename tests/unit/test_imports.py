"""What imports what: the stack code stands on its own, without the sandbox."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_iac_never_imports_the_sandbox() -> None:
    """The stack code works without the sandbox: nothing under iac/ imports sandbox/."""
    import ast

    offenders = []
    for path in (REPO / "iac").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "sandbox"]
    assert offenders == []
