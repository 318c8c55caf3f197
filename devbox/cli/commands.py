"""The full typer app: importing the command modules registers them."""

from __future__ import annotations

from devbox.cli import admin_cmds, box_cmds, profile_cmds, ssh_cmds
from devbox.cli.app import app

__all__ = ["admin_cmds", "app", "box_cmds", "profile_cmds", "ssh_cmds"]
