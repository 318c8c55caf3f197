"""`python -m devbox` runs the CLI."""

from devbox.cli import main

main()
