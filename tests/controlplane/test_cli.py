"""The command line: users, VMs, key rotation, and settings from the environment."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane import store
from controlplane.db import Database
from controlplane.keys import KeyRing
from controlplane.main import build_parser, main, settings_from
from controlplane.passwords import verify_password
from wire.protocol import Scope
from wire.tokens import TokenError, issue_token


def run(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as done:
        main(argv)
    code = done.value.code
    return code if isinstance(code, int) else 1


def test_user_add_reads_the_password_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(tmp_path / "s")
    assert (
        run(
            ["user", "add", "alice", "--password-stdin", "--state-dir", state],
            monkeypatch,
            "s3cret\n",
        )
        == 0
    )
    assert "user alice added" in capsys.readouterr().out
    db = Database.open(f"sqlite:///{tmp_path / 's' / 'controlplane.db'}")
    found = db.run_sync(lambda c: store.user_credentials(c, "alice"))
    assert found is not None
    assert found[1].startswith("$argon2id$")
    assert verify_password(found[1], "s3cret")
    # A second add refuses; --update changes the password.
    monkeypatch.setattr("sys.stdin", io.StringIO("other\n"))
    with pytest.raises(SystemExit, match="exists"):
        main(["user", "add", "alice", "--password-stdin", "--state-dir", state])
    assert (
        run(
            ["user", "add", "alice", "--password-stdin", "--update", "--state-dir", state],
            monkeypatch,
            "n3w\n",
        )
        == 0
    )
    found = db.run_sync(lambda c: store.user_credentials(c, "alice"))
    assert found is not None
    assert verify_password(found[1], "n3w")
    db.close()
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    with pytest.raises(SystemExit, match="no password"):
        main(["user", "add", "bob", "--password-stdin", "--state-dir", state])


def test_vm_add_prints_an_id_and_a_vm_token_and_revoke_lists_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "s"
    assert run(["vm", "add", "builder-1", "--state-dir", str(state)], monkeypatch) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    keyring = KeyRing(state)
    keyring.load()
    claims = keyring.verifier("ffcloud").verify(lines["token"], scope=Scope.VM)
    assert claims.sub == lines["id"]
    assert "token" not in json.dumps(lines["id"])
    assert run(["vm", "revoke", "builder-1", "--state-dir", str(state)], monkeypatch) == 0
    assert run(["vm", "list", "--state-dir", str(state)], monkeypatch) == 0
    assert "builder-1  none  revoked" in capsys.readouterr().out


def _token_lines(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines())


def test_vm_token_issues_a_new_token_for_a_registered_vm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "s"
    assert run(["vm", "add", "builder-1", "--state-dir", str(state)], monkeypatch) == 0
    first = _token_lines(capsys.readouterr().out)
    argv = ["vm", "token", "builder-1", "--vm-token-ttl", "600", "--state-dir", str(state)]
    assert run(argv, monkeypatch) == 0
    captured = capsys.readouterr()
    again = _token_lines(captured.out)
    assert captured.err == ""
    assert again["id"] == first["id"]
    assert again["token"] != first["token"]
    keyring = KeyRing(state)
    keyring.load()
    claims = keyring.verifier("ffcloud").verify(again["token"], scope=Scope.VM)
    assert claims.sub == first["id"]
    assert claims.exp - claims.iat == 600
    # By id too.
    assert run(["vm", "token", first["id"], "--state-dir", str(state)], monkeypatch) == 0
    assert _token_lines(capsys.readouterr().out)["id"] == first["id"]


def test_vm_token_refuses_an_unknown_or_revoked_vm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = str(tmp_path / "s")
    assert run(["vm", "add", "builder-1", "--state-dir", state], monkeypatch) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit, match="no VM 'nope'"):
        main(["vm", "token", "nope", "--state-dir", state])
    with pytest.raises(SystemExit, match="must be a number"):
        main(["vm", "token", "builder-1", "--vm-token-ttl", "soon", "--state-dir", state])
    with pytest.raises(SystemExit, match="more than 0"):
        main(["vm", "token", "builder-1", "--vm-token-ttl", "-5", "--state-dir", state])
    assert run(["vm", "revoke", "builder-1", "--state-dir", state], monkeypatch) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit, match="'builder-1' is revoked"):
        main(["vm", "token", "builder-1", "--state-dir", state])
    assert "token" not in capsys.readouterr().out


def test_vm_token_is_refused_on_stderr_with_a_failing_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As an operator sees it: a real process, its exit code and its streams."""
    state = str(tmp_path / "s")
    script = "from controlplane.main import main; main()"

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script, *argv, "--state-dir", state],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert run(["vm", "add", "builder-1", "--state-dir", state], monkeypatch) == 0
    assert run(["vm", "revoke", "builder-1", "--state-dir", state], monkeypatch) == 0
    refused = cli("vm", "token", "builder-1")
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert "VM 'builder-1' is revoked" in refused.stderr


def test_keys_are_private_and_rotation_keeps_the_old_key_until_its_tokens_expire(
    tmp_path: Path,
) -> None:
    keyring = KeyRing(tmp_path)
    keyring.load(now=1000.0)
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    for pem in (tmp_path / "keys").glob("*.pem"):
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    old = keyring.signing_key
    token = issue_token(old, sub="u", scope=Scope.CLIENT, issuer="ffcloud", ttl_seconds=60)
    new = keyring.rotate(longest_token_ttl=100.0, now=2000.0)
    assert new.kid != old.kid
    assert keyring.signing_key.kid == new.kid
    published = {k["kid"] for k in json.loads((tmp_path / "jwks.json").read_text())["keys"]}
    assert published == {old.kid, new.kid}
    assert keyring.verifier("ffcloud").verify(token).sub == "u"
    # Reloaded before the old key's tokens have all expired: still there.
    again = KeyRing(tmp_path)
    again.load(now=2050.0)
    assert set(again.public_keys()) == {old.kid, new.kid}
    # After: dropped, from the JWKS and from disk.
    later = KeyRing(tmp_path)
    later.load(now=2101.0)
    assert set(later.public_keys()) == {new.kid}
    assert not (tmp_path / "keys" / f"{old.kid}.pem").exists()
    with pytest.raises(TokenError):
        later.verifier("ffcloud").verify(token)


def test_keys_rotate_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keyring = KeyRing(tmp_path)
    keyring.load()
    first = keyring.signing_key.kid
    assert run(["keys", "rotate", "--state-dir", str(tmp_path)], monkeypatch) == 0
    keyring.load()
    assert keyring.signing_key.kid != first
    assert first in keyring.public_keys()


def test_settings_come_from_flags_then_environment() -> None:
    parser = build_parser()
    env = {
        "CONTROLPLANE_LISTEN": "127.0.0.1:9999",
        "CONTROLPLANE_GITHUB_TIMEOUT": "2.5",
        "CONTROLPLANE_PROVISIONER": "none",
        "CONTROLPLANE_LOCAL_NO_CLONE": "false",
        "CONTROLPLANE_STATE_DIR": "/tmp/somewhere",
    }
    settings = settings_from(parser.parse_args(["serve", "--listen", "0.0.0.0:1"]), env)
    assert settings.listen == "0.0.0.0:1"  # the flag wins
    assert settings.github_timeout == 2.5
    assert settings.provisioner == "none"
    assert settings.local_no_clone is False
    assert settings.state_dir == Path("/tmp/somewhere")
    assert settings.relay_socket_path == Path("/tmp/somewhere/relayd.sock")
    with pytest.raises(SystemExit, match="must be a number"):
        settings_from(parser.parse_args(["serve", "--github-timeout", "soon"]), {})
    with pytest.raises(SystemExit, match="local or none"):
        settings_from(parser.parse_args(["serve", "--provisioner", "cloud"]), {})
