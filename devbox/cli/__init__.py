"""The `devbox` command.

`main` answers the fast commands (help, ls, up, version, completion) without importing typer;
everything else goes to the typer app in `devbox.cli.commands`.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Console-script entry point.

    A Ctrl-C while the rest of the CLI is still being imported (the first ~100 ms, before
    its own error handling is in place) exits 130 quietly too, never with a traceback.
    """
    try:
        _main()
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)


def _main() -> None:
    from devbox.cli import fast, labgate, pipes

    if labgate.needed(sys.argv[1:]):
        labgate.redirect(sys.argv[1:])  # lab mode: the command runs in the root helper
    pipes.install()  # `devbox ls | head -1`: a closed pipe ends devbox quietly, as it ends git
    if "_DEVBOX_COMPLETE" in os.environ:
        # A click-style completion request (an old script). devbox completes through
        # `devbox __complete`; answering this by running the command line would run it.
        sys.exit(0)
    code = fast.run(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from devbox.cli import errors
    from devbox.cli.commands import app

    errors.run_app(app, sys.argv[1:])
