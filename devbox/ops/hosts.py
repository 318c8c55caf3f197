"""The servers a client can reach: the lab policy's `hosts:` and ~/.config/devbox/hosts.yaml.

Both are mappings of a host name to `ssh://[user@]address[:port]` or `local`
(policy/hostentries.py parses them); an entry of the user's file replaces the lab's entry of
the same name. `local` is always known, meaning this machine's engine, unless an entry takes
the name (it may only say `local` then). docs/hosts.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from devbox.errors import InvalidInput, NotFound, Origin, Problem
from devbox.settings import Settings

HOSTS_FILE = "hosts.yaml"  # in the user's config folder (~/.config/devbox)
LOCAL = "local"


@dataclass(frozen=True)
class Host:
    """A server devbox runs on: reached with `ssh target` (`-p port`), or this machine (local)."""

    name: str
    target: str | None  # "user@addr" or "addr" for ssh; None for local
    port: int | None
    origin: str  # "policy" | "hosts.yaml" | "builtin" (the implicit `local`)
    slurm: bool = False  # a Slurm cluster (ops/slurm.py): `target` is its login node, None here
    jump: str | None = None  # ssh -J this first (a Slurm node behind its login node)
    options: tuple[tuple[str, str], ...] = ()  # a Slurm cluster's sbatch options (partition, time, …)

    @property
    def local(self) -> bool:
        """True for this machine's engine: no ssh (a `slurm:local` cluster is not)."""
        return self.target is None and not self.slurm

    @property
    def address(self) -> str:
        """Where it is, for messages: "alice@gpu2", "alice@gpu2:2222", "this machine"."""
        if self.target is None:
            return "this machine" if not self.slurm else "Slurm, from this machine"
        return f"{self.target}:{self.port}" if self.port is not None else self.target


BUILTIN_LOCAL = Host(LOCAL, None, None, "builtin")


def user_file(settings: Settings) -> str:
    """The user's hosts file."""
    return str(settings.user_config_dir / HOSTS_FILE)


def _user_entries(settings: Settings) -> dict[str, Host]:
    from devbox.policy.hostentries import parse_hosts
    from devbox.profile import files
    from devbox.profile.yamlsrc import load_file

    path = user_file(settings)
    seen = files.look(path)
    if seen.kind == "missing":
        return {}
    if seen.error is not None:
        raise InvalidInput(
            f"cannot read {files.shown(path)}",
            [Problem(Origin(files.shown(path)), seen.error)],
            hint="make it a readable file of NAME: ssh://[user@]address[:port] lines",
        )
    doc = load_file(settings.user_config_dir / HOSTS_FILE)
    problems = list(doc.problems)
    if doc.data is not None and not isinstance(doc.data, dict):
        problems.append(
            Problem(
                doc.origin(()),
                "hosts.yaml is a mapping of host names to ssh://… or local",
                "e.g. gpu2: ssh://gpu2",
            )
        )
    entries = parse_hosts(doc, (), problems) if isinstance(doc.data, dict) else []
    if problems:
        raise InvalidInput(
            f"{files.shown(path)} is invalid",
            problems,
            hint="each line is NAME: ssh://[user@]address[:port] or NAME: local (devbox help hosts)",
        )
    return {e.name: Host(e.name, e.target, e.port, "hosts.yaml", e.slurm, options=e.options) for e in entries}


def load(settings: Settings) -> dict[str, Host]:
    """Every configured host, in order (the policy's first, then the user's own); the user's
    entry wins over the lab's of the same name. A bad entry raises InvalidInput naming its
    file:line and the fix. The implicit `local` is not listed (`get` knows it)."""
    found: dict[str, Host] = {}
    if settings.policy_path_explicit or settings.policy_path.exists():
        # A client without a lab policy (a laptop) skips loading the policy machinery.
        from devbox.policy import rules

        lab = rules.load(settings)
        found = {
            e.name: Host(e.name, e.target, e.port, "policy", e.slurm, options=e.options) for e in lab.hosts
        }
    for name, host in _user_entries(settings).items():
        found[name] = host  # replaces in place: a lab host keeps its position
    return found


def get(settings: Settings, name: str) -> Host:
    """The host called `name` (`local`: this machine, configured or not); NotFound lists the known."""
    found = load(settings)
    if name in found:
        return found[name]
    if name == LOCAL:
        return BUILTIN_LOCAL
    known = ", ".join(found) or "none yet"
    raise NotFound(
        f"no host named '{name}' (known: {known})",
        f"add it to {user_file(settings)} (e.g. {name}: ssh://{name}) or ask your lab admin; "
        "devbox hosts lists them",
    )
