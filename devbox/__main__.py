"""`python -m devbox` runs the CLI."""

import sys


def main() -> None:
    """Run the CLI; a Ctrl-C before its own error handling is in place exits 130 quietly.

    The CLI turns Ctrl-C into exit 130 once its commands run, but importing it takes a
    while (the first 100 ms or so), and an interrupt then would end in a traceback.
    """
    try:
        from devbox.cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    main()
