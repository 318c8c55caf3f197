"""`devbox env`: a box's conda environments (profile key `environments:`)."""

from __future__ import annotations

from typing import Any

from devbox.cli import shared
from devbox.cli.app import HostOpt, JsonOpt, NameArg, app, handles_errors


@app.command("env")
@handles_errors
def env(
    name: NameArg = "default",
    json_output: JsonOpt = False,
    host: HostOpt = None,
) -> None:
    """The conda environments of a box: file, hash, last update, status (and why it failed)."""
    from devbox.cli import onhost
    from devbox.ui import envs
    from devbox.ui.to_json import print_json

    settings = shared.caller()
    elsewhere = onhost.target(settings, name, host)
    data: Any
    if elsewhere is not None:
        from devbox.ops import remote

        data = remote.run_json(elsewhere, ["env", name, "--json"], onhost.COMMAND_TIMEOUT_S)
    else:
        from devbox import engine
        from devbox.ops import condaenvs

        eng = engine.connect()
        data = envs.to_json(name, condaenvs.status(eng, settings, name))
    if json_output:
        print_json(data)
    else:
        print(envs.table(data), flush=True)
