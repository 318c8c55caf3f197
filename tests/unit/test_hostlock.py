from __future__ import annotations

import subprocess
import sys
import uuid

from devbox import hostlock


def test_the_lock_excludes_other_processes_and_is_released_on_exit() -> None:
    name = f"test {uuid.uuid4()}"
    other = (
        "import sys; from devbox import hostlock; from devbox.errors import DevboxError\n"
        f"try:\n    with hostlock.held({name!r}, timeout=0.3): print('got it')\n"
        "except DevboxError as e: print('refused:', e.message)"
    )
    with hostlock.held(name):
        result = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, check=True)
        assert result.stdout.startswith("refused: another devbox process has held")
    result = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "got it"
