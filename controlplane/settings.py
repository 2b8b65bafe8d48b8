"""The control plane's settings: every limit is named here, with its default.

Each field is a command-line flag (``--relay-url``) and an environment
variable (``CONTROLPLANE_RELAY_URL``); the flag wins. ``docs/controlplane.md``
lists them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import attrs

from controlplane.nodes import DEFAULT_NODE_ID
from controlplane.throttle import Policy
from wire.protocol import DEFAULT_ISSUER

DEFAULT_LISTEN: Final = "127.0.0.1:8080"
DEFAULT_RELAY_URL: Final = "ws://127.0.0.1:8765"
DEFAULT_GITHUB_API: Final = "https://api.github.com"
#: Where ``make`` builds the web UI, relative to the checkout.
DEFAULT_WEBUI_DIR: Final = Path(__file__).resolve().parent.parent / "webui" / "dist"


@attrs.frozen
class Settings:
    """Everything ``controlplane serve`` can be told."""

    state_dir: Path
    listen: str = DEFAULT_LISTEN
    relay_socket: Path | None = None  # default: STATE_DIR/relayd.sock
    #: Where clients reach this node's relayd: ``/api/config``, and ``relayUrl``
    #: of the workspaces whose VM is connected to it.
    relay_url: str = DEFAULT_RELAY_URL
    #: This node's name among the nodes that share one PostgreSQL (unique per
    #: node: a relayd and this control plane beside it).
    node_id: str = DEFAULT_NODE_ID
    issuer: str = DEFAULT_ISSUER
    database: str | None = None  # default: SQLite file STATE_DIR/controlplane.db
    provisioner: str = "local"  # "local" or "none"
    #: vmagent processes the local provisioner keeps running.
    local_vms: int = 1
    #: Engine of the local vmagents: "demo" or "claude".
    local_engine: str = "demo"
    #: ``--git-base-url`` handed to local vmagents (None: vmagent's default).
    local_git_base_url: str | None = None
    #: Local vmagents get ``--no-clone`` (no network needed).
    local_no_clone: bool = True
    #: Where the local vmagents' token files, state and checkouts live
    #: (default: STATE_DIR-vms beside the state dir, never inside it).
    local_vm_dir: Path | None = None
    #: Command that starts a vmagent (first word), for the local provisioner.
    vmagent_command: str = "vmagent"
    webui_dir: Path = DEFAULT_WEBUI_DIR
    github_api_url: str = DEFAULT_GITHUB_API
    github_token: str | None = attrs.field(default=None, repr=False)
    #: Seconds to wait for the GitHub API before creating the workspace without it.
    github_timeout: float = 5.0
    access_token_ttl: float = 15 * 60
    #: Seconds a refresh token lives unused (each refresh makes a new one).
    refresh_token_ttl: float = 30 * 24 * 3600
    #: Seconds a login lasts at most, however often it is refreshed.
    session_max_age: float = 90 * 24 * 3600
    #: Lifetime of tokens from ``controlplane vm add`` (VMs that dial in).
    vm_token_ttl: float = 365 * 24 * 3600
    #: Lifetime of the local vmagents' tokens; renewed in their token files at half.
    local_vm_token_ttl: float = 3600.0
    #: Free login attempts per (user name, client address) before delays start.
    login_max_failures: int = 5
    #: Free login attempts per user name from every address together.
    login_account_max_failures: int = 20
    #: Quiet seconds after which a key's login attempts are forgotten.
    login_failure_window: float = 300.0
    #: Longest delay between login attempts once the free ones are spent (seconds).
    login_max_delay: float = 60.0
    #: Largest request body the API reads, in bytes.
    max_request_bytes: int = 64 * 1024
    #: Issue bodies longer than this many characters are cut.
    issue_body_max: int = 64 * 1024
    #: Workspaces one user may have that are not deleted.
    max_workspaces_per_user: int = 100
    #: Longest wait between reconnect attempts to relayd, in seconds.
    relay_backoff_max: float = 10.0
    #: Seconds a control request to relayd may take.
    relay_request_timeout: float = 5.0
    #: Seconds between reconciler passes: the longest it takes a change made
    #: by another process (``vm revoke``, a password change) to reach relayd.
    reconcile_interval: float = 5.0
    #: Seconds a VM may be offline (on every node) before its workspaces are
    #: placed again on another VM, where their conversations start over (0: never).
    vm_lost_after: float = 24 * 3600.0
    #: Seconds ended logins, refresh tokens and removed users are kept before
    #: they are deleted (never less than ``access_token_ttl`` plus relayd's leeway).
    purge_after: float = 30 * 24 * 3600.0
    #: Seconds between purges of ended rows (0: never purge).
    purge_interval: float = 3600.0
    #: Rows one purge transaction deletes at most.
    purge_batch: int = 500
    #: Clients allowed to read /metrics: "loopback" (default) or "any".
    metrics_access: str = "loopback"
    #: Serve ``Secure`` refresh cookies: "auto" (unless the request is on loopback),
    #: "always" or "never".
    cookie_secure: str = "auto"
    #: Addresses or networks (comma-separated) of the reverse proxies in front:
    #: only a request from one of them has its X-Forwarded-For/-Proto believed.
    trusted_proxies: str = ""
    #: GitHub owners (comma-separated) whose issues are fetched with
    #: ``github_token``; issues of other owners are fetched without it.
    github_token_owners: str = ""
    log_level: str = "info"

    @property
    def throttle_policy(self) -> Policy:
        """The login throttling rules."""
        return Policy(
            pair_free=self.login_max_failures,
            account_free=self.login_account_max_failures,
            window=self.login_failure_window,
            max_delay=self.login_max_delay,
        )

    @property
    def token_owners(self) -> frozenset[str]:
        """``github_token_owners`` as a set of lower-case names."""
        owners = self.github_token_owners.split(",")
        return frozenset(o.strip().lower() for o in owners if o.strip())

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the database."""
        if self.database:
            return self.database
        return f"sqlite:///{self.state_dir / 'controlplane.db'}"

    @property
    def relay_socket_path(self) -> Path:
        """The Unix control socket of relayd."""
        return self.relay_socket or self.state_dir / "relayd.sock"

    @property
    def local_vms_dir(self) -> Path:
        """The local vmagents' directory: outside the state dir, so never beside the keys."""
        if self.local_vm_dir is not None:
            return self.local_vm_dir
        state = self.state_dir.absolute()
        return state.parent / f"{state.name}-vms"

    @property
    def jwks_path(self) -> Path:
        """Where the public keys are written for relayd."""
        return self.state_dir / "jwks.json"

    @property
    def longest_token_ttl(self) -> float:
        """How long a retired signing key must stay published."""
        return max(self.access_token_ttl, self.vm_token_ttl, self.local_vm_token_ttl)
