"""Asking every host at once: `ls --all-hosts`, `gpus --all-hosts`, `devbox hosts`.

Each host gets the same timeout, in parallel (ops/fanout.py). A host that fails is one row
(one `{"host", "error"}` object under --json), never a crash; the others still print. The
exit status says whether every host answered: 0, else 6 (engine-unreachable) — the rows are
printed either way (docs/hosts.md).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from devbox.errors import EXIT_CODES, DevboxError, ExitCode, NotFound

if TYPE_CHECKING:
    from devbox.ops.fanout import Outcome
    from devbox.ops.hosts import Host
    from devbox.settings import Settings


def configured(settings: Settings) -> list[Host]:
    """Every configured host; NotFound when there is none."""
    from devbox.ops import hosts

    found = list(hosts.load(settings).values())
    if not found:
        raise NotFound(
            "no hosts configured",
            f"name your servers in {hosts.user_file(settings)} (one line each: gpu2: ssh://alice@gpu2), "
            "or ask your lab admin for a policy with hosts:; devbox help hosts",
        )
    return found


def _ask(settings: Settings, args: list[str], timeout: float) -> list[Outcome[Any]]:
    from devbox.ops import fanout, remote

    def one(host: Host) -> Any:
        if host.slurm:  # Slurm's commands here or on its login node (docs/slurm.md)
            from devbox.ops import slurmbox

            return slurmbox.fan_answer(host, args)
        return remote.run_json(host, args, timeout)

    return fanout.fan_out(configured(settings), one, timeout)


def error_row(outcome: Outcome[Any]) -> dict[str, Any]:
    """A failed host as one JSON object: `{"host": NAME, "error": {...}}` (HostErrorJson)."""
    from devbox.ui.to_json import error_json

    assert outcome.error is not None
    return {"host": outcome.host.name, "error": error_json(outcome.error)["error"]}


def _items(outcomes: list[Outcome[Any]]) -> list[dict[str, Any]]:
    """Every host's objects, each with `host` = the host's name, a failed host as its error object."""
    items: list[dict[str, Any]] = []
    for outcome in outcomes:
        if outcome.error is not None:
            items.append(error_row(outcome))
            continue
        for item in outcome.value if isinstance(outcome.value, list) else []:
            if isinstance(item, dict):
                item["host"] = outcome.host.name
                if isinstance(item.get("holder"), dict):
                    item["holder"]["host"] = outcome.host.name
                items.append(item)
    return items


def _status(outcomes: list[Outcome[Any]]) -> int:
    return 0 if all(o.ok for o in outcomes) else int(ExitCode.ENGINE_UNREACHABLE)


def ls(
    settings: Settings,
    all_users: bool,
    json_output: bool,
    owner: str | None,
    gpu: str | None,
    quiet: bool,
    timeout: float,
    all_hosts: bool = True,
) -> int:
    """`ls --all-hosts`; the exit status (`all_hosts`: the flag itself, as the fast path read it)."""
    from devbox.ui import plain, term
    from devbox.ui import remote as view

    args = ["ls", "--json"] + ["--all"] * all_users
    args += ["--owner", owner] if owner is not None else []
    args += ["--gpu", gpu] if gpu is not None else []
    outcomes = _ask(settings, args, timeout)
    items = _items(outcomes)
    if json_output:
        from devbox.ui.to_json import print_json

        print_json(items)
    elif quiet:
        sys.stdout.write("".join(f"{i['host']}\t{i['name']}\n" for i in items if "error" not in i))
        for outcome in outcomes:
            if outcome.error is not None:
                sys.stderr.write(f"{outcome.host.name}: {view.failure(outcome)}\n")
    else:
        show_owner = all_users or owner is not None or gpu is not None
        drawn = view.ls_table(outcomes, show_owner, term.styled(sys.stdout))
        if drawn is None:
            names = ", ".join(o.host.name for o in outcomes)
            drawn = f"{plain.empty_message(show_owner).split(';')[0]} on {names}"
        print(drawn)
    return _status(outcomes)


def gpus(settings: Settings, json_output: bool, timeout: float) -> int:
    """`gpus --all-hosts`; the exit status."""
    from devbox.ui import remote as view
    from devbox.ui import term

    outcomes = [_without_gpus(o) for o in _ask(settings, ["gpus", "--json"], timeout)]
    if json_output:
        from devbox.ui.to_json import print_json

        print_json(_items(outcomes))
    else:
        print(view.gpus_table(outcomes, term.styled(sys.stdout)))
    return _status(outcomes)


def _without_gpus(outcome: Outcome[Any]) -> Outcome[Any]:
    """A server whose devbox knows no GPUs (nothing declared, no driver) answered: it has none."""
    from dataclasses import replace

    error = outcome.error
    if error is not None and error.kind == "failed" and "no GPUs known" in error.message:
        return replace(outcome, value=[], error=None)
    return outcome


def probe(host: Host, timeout: float) -> dict[str, Any]:
    """One host for `devbox hosts` (HostJson): its devbox version, then its GPUs. Never raises."""
    from devbox import __version__
    from devbox.ops import remote
    from devbox.ui.to_json import error_json

    deadline = time.monotonic() + timeout
    item = _unanswered(host, None)
    try:
        if host.slurm:  # this devbox drives it: sinfo and squeue answer for the cluster
            from devbox.ops import slurmbox

            rows = slurmbox.gpu_rows(host)
            item |= {"reachable": True, "version": __version__}
        else:
            version = __version__ if host.local else remote.remote_version(host, timeout)
            item |= {"reachable": True, "version": version}
            if not remote.same_release(version, __version__):
                raise remote.skew(host, version)
            left = max(1.0, deadline - time.monotonic())
            rows = remote.run_json(host, ["gpus", "--json"], left)
    except DevboxError as exc:
        # A server with no GPUs known (nothing declared, no driver) fails `gpus`: not a problem.
        if not (item["reachable"] and exc.kind == "failed" and "no GPUs known" in exc.message):
            item["error"] = error_json(exc)["error"]
        return item
    if isinstance(rows, list):
        item["gpus_total"] = len(rows)
        item["gpus_free"] = sum(
            1
            for r in rows
            if isinstance(r, dict) and r.get("holder") is None and r.get("busy_outside") is None
        )
    return item


def hosts(settings: Settings, json_output: bool, timeout: float) -> int:
    """`devbox hosts`: every host, reachable or not, its devbox version and free GPUs; the exit status:
    0 when every host answered with this devbox release, 6 when one could not be reached, else
    the first failing host's error kind's (3: another devbox version)."""
    from devbox.ops import fanout, hosts
    from devbox.ui import remote as view
    from devbox.ui import term

    found = list(hosts.load(settings).values())
    # Both calls share one deadline per host (probe), so the backstop is the same timeout.
    outcomes = fanout.fan_out(found, lambda h: probe(h, timeout), timeout)
    items = [o.value if o.value is not None else _late(o) for o in outcomes]
    if json_output:
        from devbox.ui.to_json import print_json

        print_json(items)
    elif items:
        print(view.hosts_table(items, term.styled(sys.stdout)))
    else:
        print(f"no hosts configured: name your servers in {hosts.user_file(settings)} (devbox help hosts)")
    kinds = [i["error"]["kind"] for i in items if i["error"] is not None]
    if not kinds:
        return 0
    if "engine-unreachable" in kinds:
        return int(ExitCode.ENGINE_UNREACHABLE)
    return int(EXIT_CODES.get(kinds[0], ExitCode.ERROR))


def _unanswered(host: Host, error: Any) -> dict[str, Any]:
    """A `devbox hosts` row (HostJson) of a host nothing is known of yet, with `error`."""
    return {
        "host": host.name,
        "kind": "slurm" if host.slurm else "local" if host.local else "ssh",
        "target": host.target,
        "port": host.port,
        "origin": host.origin,
        "reachable": False,
        "version": None,
        "gpus_free": None,
        "gpus_total": None,
        "error": error,
    }


def _late(outcome: Outcome[Any]) -> dict[str, Any]:
    """A host whose probe did not end in time."""
    return _unanswered(outcome.host, error_row(outcome)["error"])
