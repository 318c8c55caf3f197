"""`devbox hosts`: the servers devbox knows, whether they answer, their devbox and free GPUs."""

from __future__ import annotations

import typer

from devbox.cli.app import JsonOpt, TimeoutOpt, app, handles_errors


@app.command("hosts")
@handles_errors
def hosts(json_output: JsonOpt = False, timeout: TimeoutOpt = 10.0) -> None:
    """The servers devbox knows (hosts:): reachable or not, their devbox version, GPUs free."""
    from devbox.cli import allhosts, shared

    code = allhosts.hosts(shared.caller(), json_output, timeout)
    if code:
        raise typer.Exit(code)
