"""Credentials from a box's log lines: Jupyter URL and token, SSH login, custom patterns.

Pure: lines in, `Credentials` out. `LogScanner` is fed one line at a time while devbox
follows the container's logs, and knows when everything the box's ports imply was found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from devbox.profile.model import CredentialPattern

Auth = Literal["token", "none", "password"]

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
# notebook 5 prints its host as "(hostname or 127.0.0.1)".
_URL_RE = re.compile(
    r"https?://(?:\([^()\s]+ or [^()\s]+\)|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d+(?:/[^\s\"'<>]*)?"
)
_EITHER_HOST_RE = re.compile(r"\(([^()\s]+) or ([^()\s]+)\)")
_AUTH_OFF_RE = re.compile(r"All authentication is disabled|not using authentication", re.IGNORECASE)
# Paths Jupyter front-ends append to the server's base_url in the URL they print.
_UI_SEGMENTS = ("lab", "tree", "notebooks", "voila", "retro")
# `?token=...` is what jupyter_server prints when the token came from the environment or config.
_HIDDEN_TOKENS = ("...", "…", "<generated>", "(token)")
_SSH_PASSWORD_RE = re.compile(r"\bssh\b[^:\n]*\bpassword\s*[:=]\s*(?P<value>\S+)", re.IGNORECASE)
_SSH_USER_RE = re.compile(r"\bssh\b[^:\n]*\buser(?:name)?\s*[:=]\s*(?P<value>[A-Za-z0-9_.-]+)", re.IGNORECASE)
_HOSTKEY_RE = re.compile(r"\b(?P<value>SHA256:[A-Za-z0-9+/]{43})")
# The devbox image's own line: devbox-ready ssh user=alice port=22 hostkey=SHA256:…
_DEVBOX_READY_RE = re.compile(r"^devbox-ready\s+(?P<what>\w+)\s+(?P<fields>.*)$")


def clean(line: str) -> str:
    """A log line without colour codes and carriage returns."""
    return _ANSI_RE.sub("", line).replace("\r", "").rstrip("\n")


@dataclass(frozen=True)
class JupyterLogin:
    """A Jupyter server as its log announced it (container-side address and port)."""

    url: str
    host: str
    port: int
    base_url: str
    token: str | None
    auth: Auth
    token_hidden: bool = False

    def for_host(self, address: str, port: int, token: str | None = None) -> JupyterLogin:
        """The same server as reached from the host: published address and port, real token."""
        token = token if token is not None else self.token
        shown = f"[{address}]" if ":" in address else address
        url = f"http://{shown}:{port}{self.base_url}"
        if self.auth == "token" and token:
            url += f"?token={token}"
        return replace(
            self,
            url=url,
            host=address,
            port=port,
            token=token,
            token_hidden=not token and self.auth == "token",
        )


@dataclass(frozen=True)
class SshLogin:
    """What the logs said about SSH access (container-side port)."""

    user: str | None = None
    password: str | None = None
    port: int | None = None
    hostkey: str | None = None


@dataclass
class Credentials:
    """Everything found so far."""

    jupyter: JupyterLogin | None = None
    ssh: SshLogin | None = None
    custom: dict[str, str] = field(default_factory=dict)


def parse_jupyter_url(text: str, auth_disabled: bool) -> JupyterLogin | None:
    """The login in a URL Jupyter printed, or None if `text` is not one."""
    match = _URL_RE.search(text)
    if not match:
        return None
    url = _EITHER_HOST_RE.sub(r"\2", match.group(0))
    if not url.endswith("=..."):  # `?token=...` is a placeholder, not punctuation
        url = url.rstrip(".,;)")
    parts = urlsplit(url)
    if parts.port is None or parts.hostname is None:
        return None
    tokens = parse_qs(parts.query, keep_blank_values=True).get("token")
    token: str | None = tokens[0] if tokens and tokens[0] else None
    path = parts.path or "/"
    segments = [s for s in path.split("/") if s]
    if segments and segments[-1] in _UI_SEGMENTS:
        segments.pop()
    base_url = "/" + "".join(f"{s}/" for s in segments)
    if token is not None and token not in _HIDDEN_TOKENS:
        auth: Auth = "token"
    elif token is not None:
        auth, token = "token", None
    else:
        auth = "none" if auth_disabled else "password"
    return JupyterLogin(
        url, parts.hostname, parts.port, base_url, token, auth, token_hidden=auth == "token" and not token
    )


def _devbox_fields(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split() if "=" in pair)


@dataclass
class LogScanner:
    """Feed log lines; `ready` once every expected credential was seen."""

    expect_jupyter: bool = False
    expect_ssh: bool = False
    patterns: tuple[CredentialPattern, ...] = ()
    found: Credentials = field(default_factory=Credentials)
    last_line: str = ""
    _auth_disabled: bool = False
    _compiled: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._compiled = [(p.name, re.compile(p.pattern)) for p in self.patterns]

    @property
    def ready(self) -> bool:
        """True when nothing the box's ports and patterns imply is still missing."""
        return not self.missing()

    def missing(self) -> list[str]:
        """Names of the credentials not found yet."""
        missing = []
        if self.expect_jupyter and self.found.jupyter is None:
            missing.append("jupyter URL")
        if self.expect_ssh and self.found.ssh is None:
            missing.append("ssh login")
        missing += [name for name, _ in self._compiled if name not in self.found.custom]
        return missing

    def feed(self, raw: str) -> None:
        """Scan one log line."""
        line = clean(raw)
        if line.strip():
            self.last_line = line.strip()
        self._devbox_line(line)
        for name, pattern in self._compiled:
            match = pattern.search(line)
            if match and name not in self.found.custom:
                self.found.custom[name] = match.group("value")
        if _AUTH_OFF_RE.search(line):
            self._auth_disabled = True
        if self.found.jupyter is None and "://" in line:
            self.found.jupyter = parse_jupyter_url(line, self._auth_disabled)
        self._ssh_line(line)

    def _devbox_line(self, line: str) -> None:
        match = _DEVBOX_READY_RE.match(line.strip())
        if not match or match.group("what") != "ssh":
            return
        fields = _devbox_fields(match.group("fields"))
        port = fields.get("port", "")
        self.found.ssh = SshLogin(
            user=fields.get("user"),
            password=fields.get("password"),
            port=int(port) if port.isdecimal() else None,
            hostkey=fields.get("hostkey"),
        )

    def _ssh_line(self, line: str) -> None:
        password = _SSH_PASSWORD_RE.search(line)
        user = _SSH_USER_RE.search(line)
        hostkey = _HOSTKEY_RE.search(line)
        if not (password or user or (hostkey and self.found.ssh)):
            return
        ssh = self.found.ssh or SshLogin()
        self.found.ssh = SshLogin(
            user=ssh.user or (user.group("value") if user else None),
            password=ssh.password or (password.group("value") if password else None),
            port=ssh.port,
            hostkey=ssh.hostkey or (hostkey.group("value") if hostkey else None),
        )


def scan(lines: list[str], patterns: tuple[CredentialPattern, ...] = ()) -> Credentials:
    """Scan a whole log at once (for `devbox info` and tests)."""
    scanner = LogScanner(patterns=patterns)
    for line in lines:
        scanner.feed(line)
    return scanner.found
