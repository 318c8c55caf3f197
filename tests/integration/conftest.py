"""Integration harness: a real Docker engine, every object labelled with this run's id and swept.

In CI (CI=true) an engine that does not answer fails the tests; elsewhere they are skipped
with the command that starts one.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., object])

RUN_ID = uuid.uuid4().hex[:8]
TEST_LABEL = "devbox-test.run"
# Every box a test makes belongs to an owner starting with this, so the sweep finds it by label.
OWNER_PREFIX = f"t{RUN_ID}"


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI, capturing text output."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


@dataclass
class Engine:
    """What the tests need to know about the engine under test."""

    version: str
    has_gpu_runtime: bool

    def inspect(self, kind: str, name: str) -> dict[str, Any]:
        """`docker KIND inspect NAME` as data."""
        data: list[dict[str, Any]] = json.loads(docker(kind, "inspect", name).stdout)
        return data[0]


# Owners the harness makes: leftovers of an earlier, killed run are swept at session start.
_ANY_RUN_OWNER = re.compile(r"^t[0-9a-f]{8}-")


def _ours(labels: dict[str, str] | None, any_run: bool = False) -> bool:
    labels = labels or {}
    owner = labels.get("devbox.owner", "")
    if any_run:
        return TEST_LABEL in labels or bool(_ANY_RUN_OWNER.match(owner))
    return labels.get(TEST_LABEL) == RUN_ID or owner.startswith(OWNER_PREFIX)


def _stale(item: dict[str, Any]) -> bool:
    """Made over 30 minutes ago: left by a killed run, not by a run still going beside this one."""
    stamp = str(item.get("Created") or item.get("CreatedAt") or "")[:19]
    try:
        made = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return False
    return datetime.now(UTC) - made > timedelta(minutes=30)


def sweep(any_run: bool = False) -> None:
    """Remove every container, then every volume, this run (or any test run) made."""
    for kind in ("container", "volume"):
        listing = docker(
            kind, "ls", "-q", *(["-a"] if kind == "container" else []), check=False
        ).stdout.split()
        if not listing:
            continue
        items = json.loads(docker(kind, "inspect", *listing, check=False).stdout or "[]")
        doomed = [
            i.get("Id") or i["Name"]
            for i in items
            if _ours((i.get("Config") or i).get("Labels"))
            or (any_run and _ours((i.get("Config") or i).get("Labels"), True) and _stale(i))
        ]
        if doomed:
            docker(kind, "rm", "-f", *doomed, check=False)


def needs_tool(name: str) -> Callable[[F], F]:
    """Skip a test that needs the program `name` where it is missing; in CI, fail instead.

    .ci/run installs every such program (scripts/ensure-test-tools), so a missing one there is
    a broken set-up, not a reason to test less.
    """

    def decorate(test: F) -> F:
        if shutil.which(name):
            return test
        message = f"{name} is not installed; scripts/ensure-test-tools installs it"
        if not os.environ.get("CI"):
            return pytest.mark.skip(reason=message)(test)

        @functools.wraps(test)
        def failing(*args: object, **kwargs: object) -> None:
            pytest.fail(message, pytrace=False)

        return failing  # type: ignore[return-value]

    return decorate


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The engine under test; fails in CI when none answers, skips elsewhere."""
    try:
        result = docker("version", "--format", "{{.Server.Version}}", check=False, timeout=30)
        answered = result.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        result, answered = None, False
        reason = str(exc)
    if not answered:
        reason = result.stderr.strip() if result else reason
        message = f"no Docker engine answers ({reason}); run scripts/ensure-engine"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    runtimes = json.loads(docker("info", "--format", "{{json .Runtimes}}").stdout or "{}")
    sweep(any_run=True)
    yield Engine(result.stdout.strip(), "nvidia" in runtimes)
    sweep()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """On a failed integration test, print each container of this run: state and last logs."""
    report = yield
    if report.when == "call" and report.failed:
        for cid in docker("ps", "-aq", check=False).stdout.split():
            # A container can go between the listing and the inspect: "[]" then.
            info = (json.loads(docker("inspect", cid, check=False).stdout or "[]") or [{}])[0]
            if _ours(info.get("Config", {}).get("Labels")):
                logs = docker("logs", "--tail", "30", cid, check=False)
                report.sections.append(
                    (f"container {info.get('Name')}", f"{info.get('State')}\n{logs.stdout}{logs.stderr}")
                )
    return report


@dataclass
class Caller:
    """A devbox user for one test: their own owner name, lab dir and working folder."""

    owner: str
    cwd: Path
    environ: dict[str, str]

    def write_profile(self, name: str, body: str) -> Path:
        """A profile file in the caller's folder, labelled with this run's id."""
        path = self.cwd / f"{name}.yaml"
        path.write_text(body + f'\nlabels: {{"{TEST_LABEL}": "{RUN_ID}"}}\n')
        return path

    def container(self, box: str) -> str:
        """The container name of this caller's box."""
        return f"devbox-{self.owner}-{box}"

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start the real CLI as this caller and return at once (for runs side by side)."""
        return subprocess.Popen(
            [sys.executable, "-m", "devbox", *args],
            cwd=self.cwd,
            env={**self.environ, "PYTHONFAULTHANDLER": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def devbox(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI in a subprocess, as this caller.

        A run past `timeout` gets SIGABRT, and faulthandler prints every thread's stack: a
        hang shows where it hangs instead of only that it did.
        """
        process = self.start(*args)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            out, err = process.communicate(timeout=30)
            raise AssertionError(
                f"devbox {' '.join(args)} hung for {timeout:g} s; its threads:\n{err}"
            ) from None
        result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        if check and result.returncode != 0:
            raise AssertionError(f"devbox {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result


def make_caller(root: Path, name: str | None = None) -> Caller:
    """A caller with their own owner name (swept at the end), lab dir and working folder."""
    lab, cwd = root / "lab", root / "work"
    lab.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    owner = f"{OWNER_PREFIX}-{name or uuid.uuid4().hex[:4]}"
    environ = {**os.environ, "DEVBOX_USER": owner, "DEVBOX_LAB_DIR": str(lab)}
    environ.pop("DEVBOX_POLICY", None)
    return Caller(owner, cwd, environ)


@pytest.fixture
def caller(engine: Engine, tmp_path: Path) -> Caller:
    """A fresh caller whose boxes and volumes the session sweep removes."""
    return make_caller(tmp_path)
