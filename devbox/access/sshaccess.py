"""How people reach a box over SSH: the ssh command line and `~/.ssh/config` entries. Pure
except `write_config`, which edits files."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

BLOCK_START = "# >>> devbox >>> (managed by `devbox ssh-config --write`; edits inside are lost)"
BLOCK_END = "# <<< devbox <<<"


@dataclass(frozen=True)
class SshTarget:
    """Everything an ssh client needs for one box."""

    host: str
    port: int
    user: str
    alias: str  # HostKeyAlias: the box's key is filed under this, whatever port it has today
    known_hosts: str
    identity_file: str | None

    def options(self) -> list[str]:
        """ssh options that pin the box's recorded host key."""
        opts = [
            "-o",
            f"HostKeyAlias={self.alias}",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
        ]
        return opts + (["-i", self.identity_file] if self.identity_file else [])

    def argv(self, command: list[str] | None = None) -> list[str]:
        """`ssh … user@host [command]`."""
        return ["ssh", "-p", str(self.port), *self.options(), f"{self.user}@{self.host}", *(command or [])]

    def command_line(self) -> str:
        """The ssh command as one copy-pastable line."""
        return shlex.join(self.argv())

    def config_block(self, name: str) -> str:
        """A `Host devbox-NAME` entry (for VS Code Remote-SSH and plain `ssh devbox-NAME`)."""
        lines = [
            f"Host devbox-{name}",
            f"  HostName {self.host}",
            f"  Port {self.port}",
            f"  User {self.user}",
            f"  HostKeyAlias {self.alias}",
            f"  UserKnownHostsFile {self.known_hosts}",
            "  StrictHostKeyChecking yes",
        ]
        if self.identity_file:
            lines += [f"  IdentityFile {self.identity_file}", "  IdentitiesOnly yes"]
        return "\n".join(lines) + "\n"


def include_block(include: Path) -> str:
    """The marked block devbox keeps at the top of ~/.ssh/config."""
    return f"{BLOCK_START}\nInclude {include}\n{BLOCK_END}\n"


def with_include(config_text: str, include: Path) -> str:
    """`config_text` with exactly one devbox block, at the top (Include must precede Host lines)."""
    kept: list[str] = []
    inside = False
    for line in config_text.splitlines(keepends=True):
        if line.startswith(BLOCK_START):
            inside = True
        elif inside and line.startswith(BLOCK_END):
            inside = False
        elif not inside:
            kept.append(line)
    rest = "".join(kept).lstrip("\n")
    return include_block(include) + ("\n" + rest if rest else "")


def write_config(ssh_config: Path, include: Path, blocks: list[str]) -> None:
    """Write the boxes' entries to `include` and reference it once from `ssh_config`."""
    include.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    header = "# devbox boxes: rewritten by `devbox ssh-config --write`\n\n"
    include.write_text(header + "\n".join(blocks))
    ssh_config.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    current = ssh_config.read_text() if ssh_config.is_file() else ""
    updated = with_include(current, include)
    if updated != current:
        ssh_config.write_text(updated)
        ssh_config.chmod(0o600)
