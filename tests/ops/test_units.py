"""The systemd units: they load, they are hardened, and they fit together.

``systemd-analyze`` (Debian's systemd package) checks them offline: no
systemd needs to run here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.ops.units import ROOT, SYSTEMD_DIR, UNITS, analyze, exposure, parse_unit

#: The issue's ceiling for the two services that face the network.
MAX_EXPOSURE = 2.0


def _recorded_scores() -> dict[str, float]:
    """The scores that docs/operations.md states, by unit name."""
    text = (ROOT / "docs" / "operations.md").read_text()
    return {
        name: float(score)
        for name, score in re.findall(r"^\| `(\w+)\.service` \| (\d+\.\d) \|", text, re.M)
    }


@pytest.mark.parametrize("name", ["relayd", "controlplane"])
def test_exposure_within_threshold(name: str) -> None:
    assert exposure(SYSTEMD_DIR / f"{name}.service") <= MAX_EXPOSURE


@pytest.mark.parametrize("name", UNITS)
def test_exposure_matches_the_operator_guide(name: str) -> None:
    """The guide states every unit's score, vmagent's looser one included."""
    assert _recorded_scores().get(name) == exposure(SYSTEMD_DIR / f"{name}.service")


@pytest.mark.parametrize("name", UNITS)
def test_unit_loads_without_warnings(name: str, tmp_path: Path) -> None:
    """``systemd-analyze verify`` accepts every key (a typo would be ignored silently)."""
    text = (SYSTEMD_DIR / f"{name}.service").read_text()
    # verify wants the program to exist; the installed one is /opt/ffcloud/bin/NAME.
    assert f"/opt/ffcloud/bin/{name}" in text
    unit = tmp_path / f"{name}.service"
    unit.write_text(text.replace(f"/opt/ffcloud/bin/{name}", "/bin/true"))
    _verifies_cleanly(unit)


def _verifies_cleanly(unit: Path) -> None:
    """``systemd-analyze verify`` accepts the unit with nothing to say."""
    proc = subprocess.run(
        [analyze(), "verify", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""
    assert proc.stdout.strip() == ""


@pytest.mark.parametrize("name", UNITS)
def test_service_basics(name: str) -> None:
    service = parse_unit(SYSTEMD_DIR / f"{name}.service")["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["Restart"] == ["on-failure"]
    assert service["WatchdogSec"][0].endswith("s")
    assert service["UMask"] == ["0077"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectHome": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == [value], key
    assert service["SystemCallFilter"][0] == "@system-service"
    assert service["User"][0] not in ("", "root")


def _command(name: str) -> dict[str, str]:
    """The flags of a unit's ExecStart, as a dict."""
    argv = shlex.split(parse_unit(SYSTEMD_DIR / f"{name}.service")["Service"]["ExecStart"][0])
    flags = {}
    for i, word in enumerate(argv):
        if word.startswith("--"):
            following = argv[i + 1] if i + 1 < len(argv) else ""
            flags[word] = "" if following.startswith("--") else following
    return flags


def test_relayd_and_controlplane_meet_where_the_units_say() -> None:
    relayd = parse_unit(SYSTEMD_DIR / "relayd.service")["Service"]
    cp = parse_unit(SYSTEMD_DIR / "controlplane.service")["Service"]
    socket = _command("relayd")["--control-socket"]
    assert _command("controlplane")["--relay-socket"] == socket
    # relayd may write only the socket's directory, which tmpfiles.d makes.
    assert relayd["ReadWritePaths"] == [str(Path(socket).parent)]
    state = "/var/lib/" + cp["StateDirectory"][0]
    assert _command("controlplane")["--state-dir"] == state
    assert _command("relayd")["--jwks"] == f"{state}/jwks.json"
    # Both run with the shared group; the state dir lets it in but not list.
    assert relayd["Group"] == cp["Group"] == ["ffcloud"]
    assert cp["StateDirectoryMode"] == ["0710"]
    assert relayd["User"] != cp["User"]


def test_sysusers_and_tmpfiles_make_what_the_units_need(tmp_path: Path) -> None:
    """Run the real systemd-sysusers and systemd-tmpfiles into a scratch root."""
    (tmp_path / "etc").mkdir()
    sysusers = SYSTEMD_DIR / "sysusers.d" / "ffcloud.conf"
    tmpfiles = SYSTEMD_DIR / "tmpfiles.d" / "ffcloud.conf"
    for argv in (
        ["systemd-sysusers", f"--root={tmp_path}", str(sysusers)],
        ["systemd-tmpfiles", f"--root={tmp_path}", "--create", str(tmpfiles)],
    ):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
    users = {
        line.split(":")[0]: line.split(":")
        for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
    }
    groups = {
        line.split(":")[0]: line.split(":")
        for line in (tmp_path / "etc" / "group").read_text().splitlines()
    }
    for name in UNITS:
        service = parse_unit(SYSTEMD_DIR / f"{name}.service")["Service"]
        assert service["User"][0] in users
        assert service["Group"][0] in groups
        assert users[service["User"][0]][6] == "/usr/sbin/nologin"
    run_dir = tmp_path / "run" / "ffcloud"
    info = run_dir.stat()
    assert info.st_mode & 0o7777 == 0o750
    assert info.st_uid == int(users["ffcloud-relayd"][2])
    assert info.st_gid == int(groups["ffcloud"][2])


def test_the_relayd_socket_unit_fits_relayd(tmp_path: Path) -> None:
    """The optional socket unit: relayd's default address, the name relayd looks
    for, its own IP rules, and it loads beside the service."""
    from relayd.activation import WS_NAME
    from relayd.settings import Settings

    socket_unit = parse_unit(SYSTEMD_DIR / "relayd.socket")["Socket"]
    assert socket_unit["ListenStream"] == [Settings().listen]
    assert socket_unit["FileDescriptorName"] == [WS_NAME]
    assert socket_unit["IPAddressDeny"] == ["any"]
    assert socket_unit["IPAddressAllow"] == ["localhost"]
    service = (SYSTEMD_DIR / "relayd.service").read_text()
    (tmp_path / "relayd.service").write_text(
        service.replace("/opt/ffcloud/bin/relayd", "/bin/true")
    )
    (tmp_path / "relayd.socket").write_text((SYSTEMD_DIR / "relayd.socket").read_text())
    _verifies_cleanly(tmp_path / "relayd.socket")
