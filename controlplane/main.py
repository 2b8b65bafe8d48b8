"""The ``controlplane`` command line (docs/protocol.md section 8).

Every flag can also come from the environment as ``CONTROLPLANE_<FLAG>``
(upper case, dashes to underscores); a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from controlplane import revocation, store
from controlplane.clientaddr import parse_networks
from controlplane.db import Database
from controlplane.keys import KeyRing
from controlplane.nodes import valid_node_id
from controlplane.passwords import MAX_PASSWORD_LENGTH, hash_password
from controlplane.settings import Settings
from controlplane.statedir import StateDirError, secure_dir
from wire.logs import setup_logging
from wire.protocol import Scope
from wire.tokens import issue_token

log = logging.getLogger("controlplane")

_SETTINGS_FIELDS = {f.name: f for f in attrs.fields(Settings)}


def env_name(flag: str) -> str:
    """``--relay-url`` -> ``CONTROLPLANE_RELAY_URL``."""
    return "CONTROLPLANE_" + flag.lstrip("-").upper().replace("-", "_")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", help="where keys, the database and VM state live")
    parser.add_argument("--database", help="SQLAlchemy URL (default: SQLite in the state dir)")
    parser.add_argument("--issuer", help="the tokens' iss claim (default: ffcloud)")
    parser.add_argument("--log-level", help="debug, info, warning, error")


#: Flags of ``serve`` (and ``dev``) beyond the common ones, and their types.
_SERVE_FLAGS: dict[str, tuple[type[Any], str]] = {
    "--listen": (str, "HOST:PORT of the HTTP API (default 127.0.0.1:8080)"),
    "--relay-socket": (Path, "relayd's control socket (default STATE_DIR/relayd.sock)"),
    "--relay-url": (str, "where clients and local VMs reach relayd (default ws://127.0.0.1:8765)"),
    "--node-id": (str, "this node's unique name on a shared database (default node1)"),
    "--provisioner": (str, "local (start vmagents here) or none (VMs dial in)"),
    "--local-vms": (int, "vmagents the local provisioner runs (default 1)"),
    "--local-engine": (str, "engine of local vmagents: demo or claude"),
    "--local-git-base-url": (str, "--git-base-url for local vmagents"),
    "--local-no-clone": (str, "true (default) or false: --no-clone for local vmagents"),
    "--local-vm-dir": (Path, "local vmagents' files (default STATE_DIR-vms, beside it)"),
    "--vmagent-command": (str, "the vmagent executable"),
    "--webui-dir": (Path, "the built web UI (default webui/dist of the checkout)"),
    "--github-api-url": (str, "GitHub REST API base URL"),
    "--github-token": (str, "token for the GitHub API (optional)"),
    "--github-timeout": (float, "seconds to wait for GitHub (default 5)"),
    "--access-token-ttl": (float, "seconds an access token lives (default 900)"),
    "--refresh-token-ttl": (float, "seconds a refresh token lives unused (default 30 days)"),
    "--session-max-age": (float, "seconds a login lasts at most, refreshed or not (90 days)"),
    "--vm-token-ttl": (float, "seconds a VM token lives (default 365 days)"),
    "--local-vm-token-ttl": (float, "seconds a local vmagent's token lives (default 3600)"),
    "--login-max-failures": (int, "free logins per user and address before delays (5)"),
    "--login-account-max-failures": (int, "free logins per user, all addresses (20)"),
    "--login-failure-window": (float, "quiet seconds that reset login counts (default 300)"),
    "--login-max-delay": (float, "longest delay between login attempts (default 60)"),
    "--max-request-bytes": (int, "largest request body (default 65536)"),
    "--issue-body-max": (int, "issue bodies are cut to this many characters"),
    "--max-workspaces-per-user": (int, "live workspaces per user (default 100)"),
    "--relay-backoff-max": (float, "longest wait between reconnects to relayd (default 10)"),
    "--relay-request-timeout": (float, "seconds a control request may take (default 5)"),
    "--reconcile-interval": (
        float,
        "seconds between checks for changes by other processes (default 5)",
    ),
    "--vm-lost-after": (
        float,
        "seconds offline before a VM's workspaces go to another VM (86400; 0: never)",
    ),
    "--purge-after": (float, "seconds ended logins are kept before deletion (30 days)"),
    "--purge-interval": (float, "seconds between purges of ended rows (3600; 0: never)"),
    "--purge-batch": (int, "rows one purge transaction deletes at most (default 500)"),
    "--metrics-access": (str, "who may read /metrics: loopback (default) or any"),
    "--cookie-secure": (str, "Secure refresh cookie: auto (default), always, never"),
    "--trusted-proxies": (str, "addresses/networks of the proxies in front (default none)"),
    "--github-token-owners": (str, "GitHub owners the server token is used for (default none)"),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="controlplane", description="FF Cloud control plane")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API, the relayd link and the provisioner")
    _add_common(serve)
    for flag, (_kind, help_text) in _SERVE_FLAGS.items():
        serve.add_argument(flag, help=help_text)

    dev = sub.add_parser("dev", help="run relayd, the control plane and a local vmagent")
    _add_common(dev)
    for flag, (_kind, help_text) in _SERVE_FLAGS.items():
        dev.add_argument(flag, help=help_text)
    dev.add_argument("--relay-listen", help="relayd's HOST:PORT (default 127.0.0.1:8765)")
    dev.add_argument("--relay-metrics-listen", help="relayd's metrics HOST:PORT (default off)")
    dev.add_argument("--relayd-command", help="the relayd executable")

    user = sub.add_parser("user", help="accounts").add_subparsers(dest="action", required=True)
    add_user = user.add_parser("add", help="create a user (or set the password of one)")
    _add_common(add_user)
    add_user.add_argument("name")
    add_user.add_argument("--password-stdin", action="store_true", required=True)
    add_user.add_argument("--update", action="store_true", help="change an existing password")

    remove_user = user.add_parser("remove", help="delete a user and their workspaces")
    _add_common(remove_user)
    remove_user.add_argument("name")

    vm = sub.add_parser("vm", help="VMs").add_subparsers(dest="action", required=True)
    add_vm = vm.add_parser("add", help="register a VM; prints its id and token")
    _add_common(add_vm)
    add_vm.add_argument("name")
    add_vm.add_argument("--vm-token-ttl", help="seconds the token lives (default 365 days)")
    token = vm.add_parser("token", help="issue a new token for a VM; prints its id and token")
    _add_common(token)
    token.add_argument("name")
    token.add_argument("--vm-token-ttl", help="seconds the token lives (default 365 days)")
    revoke = vm.add_parser("revoke", help="revoke a VM: relayd cuts it off")
    _add_common(revoke)
    revoke.add_argument("name")
    list_vms = vm.add_parser("list", help="list VMs")
    _add_common(list_vms)

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(dest="action", required=True)
    rotate = keys.add_parser(
        "rotate", help="new signing key; the old stays until its tokens expire"
    )
    _add_common(rotate)
    rotate.add_argument("--access-token-ttl")
    rotate.add_argument("--vm-token-ttl")
    return parser


def _convert(name: str, raw: str) -> Any:
    kind = _SETTINGS_FIELDS[name].type
    text = str(kind)
    if "bool" in text:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if "Path" in text:
        return Path(raw)
    if "int" in text:
        return int(raw)
    if "float" in text:
        return float(raw)
    return raw


def settings_from(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Settings from flags, then ``CONTROLPLANE_*`` variables, then defaults."""
    values: dict[str, Any] = {}
    for name in _SETTINGS_FIELDS:
        flag = "--" + name.replace("_", "-")
        raw = getattr(args, name, None)
        if raw is None:
            raw = env.get(env_name(flag))
        if raw is None or raw == "":
            continue
        try:
            values[name] = _convert(name, raw)
        except ValueError:
            raise SystemExit(f"controlplane: {flag} must be a number, not {raw!r}") from None
    values.setdefault("state_dir", Path(".state"))
    settings = Settings(**values)
    if settings.provisioner not in ("local", "none"):
        raise SystemExit("controlplane: --provisioner must be local or none")
    if settings.local_engine not in ("demo", "claude"):
        raise SystemExit("controlplane: --local-engine must be demo or claude")
    if settings.purge_batch < 1:
        raise SystemExit("controlplane: --purge-batch must be at least 1")
    if not valid_node_id(settings.node_id):
        raise SystemExit("controlplane: --node-id is 1 to 64 letters, digits, '.', '_' or '-'")
    try:
        parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise SystemExit(f"controlplane: --trusted-proxies: {exc}") from None
    return settings


def _private_state_dir(settings: Settings) -> None:
    try:
        secure_dir(settings.state_dir)
    except StateDirError as exc:
        raise SystemExit(f"controlplane: {exc}") from None


def _open_db(settings: Settings) -> Database:
    _private_state_dir(settings)
    return Database.open(settings.database_url)


def _write_revocations(db: Database, settings: Settings) -> None:
    """``revoked.json`` for relayd, now: it reads it on SIGHUP even with no control plane."""
    ttl = settings.access_token_ttl
    revocation.write(settings.state_dir, db.run_sync(lambda c: revocation.build(c, ttl)))


def _read_password() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise SystemExit("controlplane: no password on standard input")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise SystemExit(f"controlplane: password longer than {MAX_PASSWORD_LENGTH} characters")
    return password


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    """``controlplane user add NAME --password-stdin``."""
    name = args.name
    if not name or len(name) > 64 or any(c.isspace() for c in name):
        raise SystemExit("controlplane: a user name is 1 to 64 characters without spaces")
    hashed = hash_password(_read_password())
    db = _open_db(settings)
    try:
        if args.update:
            if not db.run_sync(lambda c: store.set_password(c, name, hashed)):
                raise SystemExit(f"controlplane: no user {name!r}")
            _write_revocations(db, settings)
            print(f"password of {name} changed; their sessions end")
            return 0
        try:
            user = db.run_sync(lambda c: store.add_user(c, name, hashed))
        except store.AlreadyExists:
            raise SystemExit(f"controlplane: user {name!r} exists (use --update)") from None
        print(f"user {user.username} added (id {user.id})")
    finally:
        db.close()
    return 0


def cmd_user_remove(args: argparse.Namespace, settings: Settings) -> int:
    """``controlplane user remove NAME``: the user, their sessions and workspaces go."""
    db = _open_db(settings)
    try:
        if db.run_sync(lambda c: store.remove_user(c, args.name)) is None:
            raise SystemExit(f"controlplane: no user {args.name!r}")
        _write_revocations(db, settings)
    finally:
        db.close()
    print(f"user {args.name} removed; their sessions end")
    return 0


def _vm_token_ttl(args: argparse.Namespace, settings: Settings) -> float:
    if not args.vm_token_ttl:
        return settings.vm_token_ttl
    try:
        ttl = float(args.vm_token_ttl)
    except ValueError:
        raise SystemExit(
            f"controlplane: --vm-token-ttl must be a number, not {args.vm_token_ttl!r}"
        ) from None
    if not ttl > 0:
        raise SystemExit("controlplane: --vm-token-ttl must be more than 0")
    return ttl


def _print_vm_token(keyring: KeyRing, settings: Settings, vm_id: str, ttl: float) -> None:
    """The VM's id and a fresh ``vm`` token, on standard output only (never logged)."""
    token = issue_token(
        keyring.signing_key, sub=vm_id, scope=Scope.VM, issuer=settings.issuer, ttl_seconds=ttl
    )
    print(f"id: {vm_id}")
    print(f"token: {token}")


def cmd_vm_add(args: argparse.Namespace, settings: Settings) -> int:
    """``controlplane vm add NAME``: prints the id and a VM token."""
    ttl = _vm_token_ttl(args, settings)
    keyring = KeyRing(settings.state_dir)
    db = _open_db(settings)
    keyring.load()
    try:
        try:
            vm = db.run_sync(lambda c: store.add_vm(c, args.name, "none"))
        except store.AlreadyExists:
            raise SystemExit(f"controlplane: VM {args.name!r} exists") from None
    finally:
        db.close()
    _print_vm_token(keyring, settings, vm.id, ttl)
    return 0


def cmd_vm_token(args: argparse.Namespace, settings: Settings) -> int:
    """``controlplane vm token NAME``: a new token for a registered, unrevoked VM.

    The VM's earlier tokens stay valid until they expire (relayd checks
    signatures only); ``vm revoke`` is what cuts a VM off.
    """
    ttl = _vm_token_ttl(args, settings)
    db = _open_db(settings)
    try:
        vm = db.run_sync(lambda c: store.find_vm(c, args.name))
    finally:
        db.close()
    if vm is None:
        raise SystemExit(f"controlplane: no VM {args.name!r}")
    if vm.revoked:
        raise SystemExit(f"controlplane: VM {vm.name!r} is revoked; register it again (vm add)")
    keyring = KeyRing(settings.state_dir)
    keyring.load()
    _print_vm_token(keyring, settings, vm.id, ttl)
    return 0


def cmd_vm_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """``controlplane vm revoke NAME``: the running control plane cuts it off."""
    db = _open_db(settings)
    try:
        vm = db.run_sync(lambda c: store.find_vm(c, args.name))
        if vm is None:
            raise SystemExit(f"controlplane: no VM {args.name!r}")
        moved = db.run_sync(lambda c: store.revoke_vm(c, vm.id))
        _write_revocations(db, settings)
    finally:
        db.close()
    print(f"VM {vm.name} revoked; {len(moved)} workspace(s) will be placed elsewhere")
    listed = revocation.revocations_path(settings.state_dir)
    print(f"relayd refuses it when the control plane tells it, or on SIGHUP (from {listed})")
    return 0


def cmd_vm_list(_args: argparse.Namespace, settings: Settings) -> int:
    """``controlplane vm list``."""
    db = _open_db(settings)
    try:
        for vm in db.run_sync(store.list_vms):
            state = "revoked" if vm.revoked else ("online" if vm.online else "offline")
            print(f"{vm.id}  {vm.name}  {vm.provisioner}  {state}")
    finally:
        db.close()
    return 0


def cmd_keys_rotate(_args: argparse.Namespace, settings: Settings) -> int:
    """``controlplane keys rotate``."""
    _private_state_dir(settings)
    keyring = KeyRing(settings.state_dir)
    keyring.load()
    key = keyring.rotate(settings.longest_token_ttl)
    print(f"new signing key {key.kid}; reload the control plane and relayd (SIGHUP)")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console script ``controlplane``."""
    args = build_parser().parse_args(argv)
    settings = settings_from(args, os.environ)
    setup_logging(settings.log_level)
    if args.command == "serve":
        from controlplane.dev import leaves
        from controlplane.server import serve

        try:
            trio.run(lambda: serve(settings, handle_signals=True))
        except* OSError as group:
            for exc in leaves(group):
                log.error("cannot serve", extra={"error": str(exc)})
            sys.exit(1)
        return
    if args.command == "dev":
        from controlplane.dev import run_dev

        sys.exit(run_dev(args, settings))
    handlers = {
        ("user", "add"): cmd_user_add,
        ("user", "remove"): cmd_user_remove,
        ("vm", "add"): cmd_vm_add,
        ("vm", "token"): cmd_vm_token,
        ("vm", "revoke"): cmd_vm_revoke,
        ("vm", "list"): cmd_vm_list,
        ("keys", "rotate"): cmd_keys_rotate,
    }
    sys.exit(handlers[(args.command, args.action)](args, settings))
