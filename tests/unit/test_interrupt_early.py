"""Ctrl-C while devbox is still importing its CLI (the first ~150 ms) exits 130 without a traceback."""

from __future__ import annotations

import subprocess
import sys

# Ctrl-C arriving just as `devbox.cli` is imported (what python -m devbox does first).
_INTERRUPTED_IMPORT = """
import builtins, runpy
real = builtins.__import__
def importing(name, *args, **kwargs):
    if name == "devbox.cli":
        raise KeyboardInterrupt
    return real(name, *args, **kwargs)
builtins.__import__ = importing
runpy.run_module("devbox", run_name="__main__")
"""


def test_ctrl_c_while_importing_exits_130_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_IMPORT, "ls"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 130
    assert "Traceback" not in result.stderr and "interrupted" in result.stderr


# The console script (`devbox`) calls devbox.cli.main, which imports the fast path first.
_INTERRUPTED_FAST_IMPORT = """
import builtins, sys
real = builtins.__import__
def importing(name, *args, **kwargs):
    if name == "devbox.cli" and args and args[2] and "fast" in args[2]:
        raise KeyboardInterrupt
    return real(name, *args, **kwargs)
builtins.__import__ = importing
from devbox.cli import main
sys.argv = ["devbox", "ls"]
main()
"""


def test_ctrl_c_while_the_console_script_imports_exits_130_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_FAST_IMPORT], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr and "interrupted" in result.stderr
