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

    def config_block(self, name: str, proxy_command: str) -> str:
        """A `Host devbox-NAME` entry reaching the box through `proxy_command` (see `entry_block`)."""
        return entry_block(name, self.user, self.alias, self.known_hosts, self.identity_file, proxy_command)


def entry_block(
    name: str, user: str, alias: str, known_hosts: str, identity_file: str | None, proxy_command: str
) -> str:
    """A `Host devbox-NAME` entry (for VS Code Remote-SSH and plain `ssh devbox-NAME`).

    No HostName and no Port: `devbox proxy NAME` finds the box's port when ssh connects, so a
    restart (a new port) or a box on another server changes nothing here. The host key is
    checked against the one devbox recorded under `alias`.
    """
    lines = [
        f"Host devbox-{name}",
        f"  User {user}",
        f"  HostKeyAlias {alias}",
        f"  UserKnownHostsFile {_config_word(known_hosts)}",
        "  StrictHostKeyChecking yes",
        f"  ProxyCommand {proxy_command}",
    ]
    if identity_file:
        lines += [f"  IdentityFile {_config_word(identity_file)}", "  IdentitiesOnly yes"]
    return "\n".join(lines) + "\n"


def _config_word(path: str) -> str:
    """A path as one ssh_config word: quoted if it has blanks, `%` doubled (ssh expands %-tokens)."""
    escaped = path.replace("%", "%%")
    return f'"{escaped}"' if any(c.isspace() for c in escaped) else escaped


def proxy_command(devbox: list[str], name: str, host: str | None = None) -> str:
    """`devbox proxy NAME [--host HOST]` as a ProxyCommand (run by a shell; `%` doubled for ssh)."""
    argv = [*devbox, "proxy", name, *(["--host", host] if host else [])]
    return shlex.join(argv).replace("%", "%%")


def remote_alias(owner: str, name: str, host: str) -> str:
    """The HostKeyAlias of a box on server `host`: never the same as a box of this machine's."""
    return f"devbox-{owner}-{name}@{host}"


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


def entry_host(block: str) -> str | None:
    """The server a `Host` entry reaches its box on (its ProxyCommand's --host), None if unknown."""
    for line in block.splitlines():
        words = line.split()
        if words[:1] == ["ProxyCommand"] and len(words) >= 3 and words[-2] == "--host":
            return words[-1]
    return None


def other_entries(include_text: str, host: str, names: set[str]) -> list[str]:
    """The entries of an include file for boxes on other servers than `host` (and not named in
    `names`): what `ssh-config --host HOST --write` keeps while it rewrites HOST's entries."""
    blocks: list[str] = []
    for line in include_text.splitlines(keepends=True):
        if line.startswith("Host devbox-"):
            blocks.append(line)
        elif blocks and line.strip():
            blocks[-1] += line
    return [
        b
        for b in blocks
        if entry_host(b) not in (host, None) and b.split()[1].removeprefix("devbox-") not in names
    ]


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
