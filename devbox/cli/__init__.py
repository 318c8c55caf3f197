"""The `devbox` command.

`main` answers the fast commands (help, ls) without importing typer; everything else goes
to the typer app in `devbox.cli.commands`.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point."""
    from devbox.cli import fast

    code = fast.run(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from devbox.cli.commands import app

    app(prog_name="devbox")
