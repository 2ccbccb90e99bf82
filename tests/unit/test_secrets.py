"""Secrets without a host (stack/secrets.py, stack/load.py): which options are secrets, the
secrets file (canaries generated once and kept, 0600 from its first byte, never left half
written, a missing secret named) and that a secret never prints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from iac.errors import ConfigError
from iac.values import Strict
from stack.load import secret_paths
from stack.secrets import SecretsFile, crypt_sha512, production_secrets


class _Inner(Strict):
    token: SecretStr
    maybe: SecretStr | None = None


class _WithSecret(Strict):
    inner: _Inner
    plain: str = "x"


def test_secret_fields_are_found_in_the_model_tree() -> None:
    from stack.load import secret_paths as paths

    assert paths(_WithSecret) == [("inner", "token"), ("inner", "maybe")]
    assert paths(_WithSecret, required_only=True) == [("inner", "token")]
    assert ("admin", "password_hash") in paths()


def test_secret_paths_follow_declared_apps() -> None:
    data = {"apps": {"shop": {"user": "shop"}, "rental": {"discord_alerts": {"enabled": True}}}}
    found = secret_paths(data=data, required_only=True)
    assert ("apps", "shop", "secret_key") in found and ("apps", "rental", "secret_key") in found
    assert ("apps", "rental", "discord_alerts", "webhook_url") in found
    assert ("apps", "shop", "discord_alerts", "webhook_url") not in found


def test_sandbox_canaries_are_generated_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    paths = [("inner", "token"), ("hook", "url")]
    source = SecretsFile(path, generate=True, special={("hook", "url"): lambda t: f"http://x/{t}"})
    first = source.provide("lan", paths, required=paths)
    token = first["inner"]["token"]
    assert token.startswith("CANARY-inner.token-") and len(token) > 30
    assert first["hook"]["url"].startswith("http://x/CANARY-hook.url-")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = SecretsFile(path, generate=True).provide("lan", paths, required=paths)
    assert again == first, "a second load must not regenerate secrets"


def test_the_secrets_file_is_0600_from_its_first_byte_whatever_the_umask(tmp_path: Path, monkeypatch) -> None:
    """Created exclusively with mode 0600 beside the file, then renamed over it: at no moment is
    a file there readable by others, even under umask 000, and a planted link is never followed."""
    import os

    from stack import secrets as secrets_module

    path = tmp_path / "sbx" / "secrets.json"
    seen: list[tuple[str, int, int]] = []  # (what, flags or 0, mode of the file at that moment)
    real_open, real_replace = os.open, os.replace

    def watched_open(file, flags, mode=0o777, *args, **kwargs):  # noqa: ANN001, ANN202
        fd = real_open(file, flags, mode, *args, **kwargs)
        seen.append(("open", flags, os.fstat(fd).st_mode & 0o777))
        return fd

    def watched_replace(src, dst):  # noqa: ANN001, ANN202
        seen.append(("replace", 0, os.stat(src).st_mode & 0o777))
        assert Path(src).parent == Path(dst).parent  # same directory: an atomic rename
        return real_replace(src, dst)

    monkeypatch.setattr(secrets_module.os, "open", watched_open)
    monkeypatch.setattr(secrets_module.os, "replace", watched_replace)
    old = os.umask(0)
    try:
        SecretsFile(path, generate=True).provide("lan", [("inner", "token")], required=[("inner", "token")])
        # a second write replaces the first the same way
        SecretsFile(path, generate=True).provide("lan", [("inner", "other")], required=[("inner", "other")])
    finally:
        os.umask(old)
    assert [what for what, _, _ in seen] == ["open", "replace", "open", "replace"]
    for what, flags, mode in seen:
        assert mode == 0o600, (what, oct(mode))
        if what == "open":
            assert flags & os.O_CREAT and flags & os.O_EXCL and flags & os.O_NOFOLLOW
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["secrets.json"]  # no temporary left


def test_a_failed_secrets_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch) -> None:
    from stack import secrets as secrets_module

    path = tmp_path / "secrets.json"
    secrets_module.write_private(path, '{"lan": {}}')

    def broken(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(secrets_module.os, "fsync", broken)
    with pytest.raises(OSError, match="No space"):
        secrets_module.write_private(path, '{"lan": {"x": 1}}')
    assert path.read_text() == '{"lan": {}}' and [p.name for p in tmp_path.iterdir()] == ["secrets.json"]


def test_missing_required_secret_is_named(tmp_path: Path) -> None:
    path = tmp_path / "prod.json"
    path.write_text('{"lan": {}}')
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=r"group lan: missing secrets in the secrets file .*\n  inner.token"):
        SecretsFile(path).provide("lan", [("inner", "token")], required=[("inner", "token")])
    offline = SecretsFile(path, require=False).provide("lan", [("inner", "token")], [("inner", "token")])
    assert offline == {"inner": {"token": "(not provided: offline validation)"}}


def test_secrets_never_print() -> None:
    cfg = _WithSecret(inner=_Inner(token=SecretStr("CANARY-x-123")))
    for text in (repr(cfg), str(cfg), str(cfg.model_dump()), cfg.model_dump_json()):
        assert "CANARY-x-123" not in text


def test_production_run_without_secrets_file_is_refused(monkeypatch) -> None:
    """Under pyinfra (required=True) a host whose model needs a secret refuses to load."""
    monkeypatch.delenv("IAC_SECRETS_FILE", raising=False)
    source = production_secrets(required=True)
    with pytest.raises(ConfigError, match="IAC_SECRETS_FILE"):
        source.provide("public", [("apps", "x", "secret_key")], [("apps", "x", "secret_key")])


def test_a_sandbox_keeps_a_secret_of_its_own_and_a_value_derived_from_it(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    secrets = SecretsFile(path, generate=True)
    password = secrets.own_secret("lan", ("sandbox", "admin_sudo_password"), lambda t: f"{t} $(x)")
    assert password.startswith("CANARY-sandbox.admin_sudo_password-") and password.endswith(" $(x)")
    assert (path.stat().st_mode & 0o777) == 0o600
    again = SecretsFile(path, generate=True)
    assert again.own_secret("lan", ("sandbox", "admin_sudo_password")) == password  # kept, not made anew
    hashed = crypt_sha512(password, "0123456789abcdef")
    assert hashed.startswith("$6$0123456789abcdef$") and hashed == crypt_sha512(password, "0123456789abcdef")
    again.keep("lan", ("admin", "password_hash"), hashed)
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(0, 0))
    SecretsFile(path, generate=True).keep("lan", ("admin", "password_hash"), hashed)  # unchanged: not rewritten
    assert path.stat().st_mtime_ns == 0 != before
    provided = SecretsFile(path, generate=True).provide("lan", [("admin", "password_hash")], [])
    assert provided == {"admin": {"password_hash": hashed}}
    with pytest.raises(ConfigError, match="only a generated"):
        SecretsFile(path).own_secret("lan", ("sandbox", "x"))
    with pytest.raises(ConfigError, match="newline"):
        crypt_sha512("a\nb", "salt")


def test_a_secrets_file_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "prod.json"
    path.write_text('{"lan": {}}')
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"can be read or written by others \(mode 0644\): `chmod 600 .*prod.json`"):
        SecretsFile(path, require=False)
    path.chmod(0o600)
    assert SecretsFile(path, require=False).data == {"lan": {}}


def test_a_secrets_file_from_a_pipe_is_read() -> None:
    """`IAC_SECRETS_FILE=<(pass show iac/production)`: a pipe has no mode to check; it is read once."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    program = ("import sys; from stack.secrets import SecretsFile; from pathlib import Path; "
               "s = SecretsFile(Path(sys.argv[1]), require=True); "
               "print(s.provide('lan', [('inner', 'token')], [('inner', 'token')])['inner']['token'])")
    done = subprocess.run(["bash", "-c", f"{sys.executable} -c \"{program}\" "
                                         "<(printf '%s' '{\"lan\": {\"inner\": {\"token\": \"t0ken\"}}}')"],
                          cwd=repo, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "t0ken", done.stderr


PIPED_PARENT = """import os, subprocess, sys
from pathlib import Path
from iac import piped
from stack.secrets import SecretsFile
path = os.environ["IAC_SECRETS_FILE"]
first = SecretsFile(Path(path), require=False).data
outs = []
for _ in range(2):  # the plan, then the run: each child gets a pipe of its own
    env, fds, started = piped.child_env(dict(os.environ))
    child = subprocess.Popen([sys.executable, "-c", "import os, sys; from iac import piped; "
                              "sys.stdout.buffer.write(piped.read(os.environ['IAC_SECRETS_FILE']))"],
                             env=env, pass_fds=fds, stdout=subprocess.PIPE)
    started()
    outs.append(child.communicate()[0].decode())
again = SecretsFile(Path(path), require=False).data  # the parent reads it again (redaction)
print(first == again, outs[0] == outs[1], outs[0], env["IAC_SECRETS_FILE"].startswith("/dev/fd/"))
"""


def test_a_piped_secrets_file_reaches_every_process_of_a_command() -> None:
    """`IAC_SECRETS_FILE=<(pass show ...) iac apply`: the command reads it, and so do its plan and
    its run (iac/piped.py: read once, handed down through a new pipe each)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    data = '{"lan": {"inner": {"token": "t0ken-piped"}}}'
    done = subprocess.run(["bash", "-c", f"IAC_SECRETS_FILE=<(printf '%s' '{data}') {sys.executable} -c \"$0\"",
                           PIPED_PARENT], cwd=repo, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", *data.split(), "True"]
