"""Several servers, the client's core: hosts config, the ssh runner, fan-out, placement, sticky boxes.

The servers are fake (tests/unit/fakessh.py: an `ssh` on PATH answering from a folder per
host); tests/integration/test_hosts.py runs the same against real sshd + dockerd hosts.
"""

from __future__ import annotations

import json
import random
import stat
import threading
import time
from pathlib import Path

import pytest

from devbox import __version__
from devbox.errors import (
    EXIT_CODES,
    DevboxError,
    EngineUnreachable,
    Interrupted,
    InvalidInput,
    NoCapacity,
    NotFound,
    Refused,
)
from devbox.ops import autoplace, fanout, hosts, remote, sticky
from devbox.ops.hosts import Host
from tests.conftest import Sandbox
from tests.unit import fakessh
from tests.unit.fakeservers import servers_fixture  # noqa: F401 (the `servers` fixture)


def host(name: str, port: int | None = None) -> Host:
    return Host(name, f"alice@{name}", port, "hosts.yaml")


# --- hosts: the policy's and the user's ----------------------------------------------


def test_hosts_come_from_the_policy_and_the_users_file_whose_entries_win(sandbox: Sandbox) -> None:
    policy = sandbox.write(
        "lab/policy.yaml", "hosts:\n  h1: ssh://alice@gpu1\n  h2: ssh://gpu2:2222\n  here: local\n"
    )
    sandbox.write("home/.config/devbox/hosts.yaml", "h2: ssh://bob@10.0.0.2\nh4: 'ssh://[fd00::4]:22/'\n")
    found = hosts.load(sandbox.settings(DEVBOX_POLICY=str(policy)))
    assert list(found) == ["h1", "h2", "here", "h4"]  # the lab's order, the user's additions after
    assert found["h1"] == Host("h1", "alice@gpu1", None, "policy")
    assert found["h2"] == Host("h2", "bob@10.0.0.2", None, "hosts.yaml")
    assert found["here"].local and found["here"].address == "this machine"
    assert (found["h4"].target, found["h4"].port) == ("fd00::4", 22)


def test_get_knows_local_and_names_the_known_hosts_for_a_typo(sandbox: Sandbox) -> None:
    sandbox.write("home/.config/devbox/hosts.yaml", "h1: ssh://gpu1\n")
    settings = sandbox.settings()
    assert hosts.get(settings, "local").local
    with pytest.raises(NotFound) as caught:
        hosts.get(settings, "h9")
    assert "no host named 'h9' (known: h1)" in caught.value.message
    assert "hosts.yaml" in (caught.value.hint or "")


def test_policy_show_lists_the_hosts(sandbox: Sandbox) -> None:
    from devbox.policy import rules
    from devbox.ui.to_json import policy_json

    policy = sandbox.write("lab/policy.yaml", "hosts:\n  h1: ssh://alice@gpu1:2222\n  h6: ssh://[::1]\n")
    lab = rules.load(sandbox.settings(DEVBOX_POLICY=str(policy)))
    assert policy_json(lab)["hosts"] == {"h1": "ssh://alice@gpu1:2222", "h6": "ssh://[::1]"}


BAD_HOSTS = """\
h1: gpu1
h2: http://gpu2
auto: ssh://gpu3
"bad name": ssh://gpu4
h5: ssh://gpu5:70000
h6: 42
local: ssh://gpu7
h8: ssh://-oProxyCommand=x
"""


def test_every_bad_entry_is_located_with_its_fix(sandbox: Sandbox) -> None:
    path = sandbox.write("home/.config/devbox/hosts.yaml", BAD_HOSTS)
    with pytest.raises(InvalidInput) as caught:
        hosts.load(sandbox.settings())
    problems = caught.value.problems
    assert [(p.origin.source, p.origin.line) for p in problems] == [(str(path), n) for n in range(1, 9)]
    text = [p.message for p in problems]
    assert "'gpu1' is not ssh://[user@]address[:port] or local" in text[0]
    assert "over ssh only" in text[1]
    assert "'auto' is reserved" in text[2]
    assert "host name 'bad name'" in text[3]
    assert "port 70000" in text[4]
    assert "not 42" in text[5]
    assert "'local' means this machine" in text[6]
    assert "is not ssh://" in text[7]  # an address never starts with '-': ssh would take an option
    assert all(p.hint for p in problems)
    assert caught.value.exit_code == 2 and "hosts.yaml" in caught.value.message


def test_a_bad_policy_hosts_key_is_a_policy_problem(sandbox: Sandbox) -> None:
    from devbox.policy import rules

    policy = sandbox.write("lab/policy.yaml", "limits: {}\nhosts: [gpu1, gpu2]\n")
    with pytest.raises(InvalidInput) as caught:
        rules.load(sandbox.settings(DEVBOX_POLICY=str(policy)))
    [problem] = caught.value.problems
    assert (problem.origin.source, problem.origin.line) == (str(policy), 2)
    assert "mapping of host names" in problem.message


def test_a_hosts_file_with_a_hosts_key_says_to_drop_it(sandbox: Sandbox) -> None:
    sandbox.write("home/.config/devbox/hosts.yaml", "hosts:\n  h1: ssh://gpu1\n")
    with pytest.raises(InvalidInput) as caught:
        hosts.load(sandbox.settings())
    assert "without a hosts: key" in (caught.value.problems[0].hint or "")


# --- the ssh command line --------------------------------------------------------------


def test_ssh_argv_shares_one_private_master_per_host_and_never_prompts(servers: Path) -> None:
    argv = remote.ssh_argv(host("h1", 2222), ["devbox", "ls", "--json", "it's"])
    folder = remote.control_dir()
    assert folder is not None and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert argv[0] == "ssh" and "-F" not in argv  # the user's ~/.ssh/config applies
    options = {argv[i + 1] for i, a in enumerate(argv) if a == "-o"}
    assert {"ControlMaster=auto", f"ControlPath={folder}/%C", "ControlPersist=60", "BatchMode=yes"} <= options
    assert any(o.startswith("ConnectTimeout=") for o in options)
    assert argv[argv.index("-p") + 1] == "2222" and "-T" in argv
    assert argv[-2:] == ["alice@h1", "devbox ls --json 'it'\"'\"'s'"]  # quoted for the server's shell
    tty = remote.ssh_argv(host("h1"), ["devbox", "exec", "nb", "--", "bash"], tty=True, extra=["-A"])
    assert "-t" in tty and "-T" not in tty and tty[-3:-1] == ["-A", "alice@h1"]
    with pytest.raises(DevboxError):
        remote.ssh_argv(hosts.BUILTIN_LOCAL, ["true"])


def test_a_long_home_gets_a_short_control_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 60)
    monkeypatch.setenv("HOME", str(deep))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    folder = remote.control_dir()
    assert folder is not None and len(str(folder)) <= 49  # room for %C and ssh's temporary suffix


# --- answers and errors from the server ------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("failed", DevboxError),
        ("invalid", InvalidInput),
        ("refused", Refused),
        ("no-capacity", NoCapacity),
        ("not-found", NotFound),
        ("engine-unreachable", EngineUnreachable),
        ("interrupted", Interrupted),
    ],
)
def test_a_server_error_comes_back_as_the_same_kind(kind: str, cls: type[DevboxError]) -> None:
    body = {
        "kind": kind,
        "message": "it went wrong",
        "hint": "do this",
        "problems": [{"file": "/srv/p.yaml", "line": 3, "column": 7, "message": "bad", "fix": "good"}],
    }
    error = remote.error_from_json("h2", body)
    assert type(error) is cls and error.kind == kind and error.exit_code == EXIT_CODES[kind]  # type: ignore[index]
    assert error.message == "h2: it went wrong" and error.hint == "do this"
    [problem] = error.problems
    assert (str(problem.origin), problem.message, problem.hint) == ("/srv/p.yaml:3:7", "bad", "good")


def test_run_json_decodes_answers_and_errors(servers: Path) -> None:
    fakessh.add_host(servers, "alice@h1", gpus=1)
    data = remote.run_json(host("h1"), ["up", "nb.yaml", "--json"], 10)
    assert data["name"] == "nb" and data["gpus"] == [0]
    with pytest.raises(NoCapacity) as caught:
        remote.run_json(host("h1"), ["up", "other.yaml", "--json"], 10)
    assert caught.value.message == "h1: no free GPU: asked for 1, 0 of 1 free"
    with pytest.raises(NotFound):
        remote.run_json(host("h1"), ["info", "ghost", "--json"], 10)


def test_ssh_failing_is_engine_unreachable_naming_the_host_and_what_ssh_said(servers: Path) -> None:
    fakessh.add_host(servers, "alice@h3:2222", mode="down")
    with pytest.raises(EngineUnreachable) as caught:
        remote.run_json(host("h3", 2222), ["ls", "--json"], 10)
    assert caught.value.message == (
        "cannot reach h3 (alice@h3:2222) over ssh: "
        "ssh: connect to host alice@h3 port 2222: Connection refused"
    )
    assert "ssh -p 2222 alice@h3 true" in (caught.value.hint or "")
    with pytest.raises(EngineUnreachable) as unknown:
        remote.run_json(host("nowhere"), ["ls", "--json"], 10)
    assert "Could not resolve hostname" in unknown.value.message


def test_a_server_that_does_not_answer_in_time_is_engine_unreachable(servers: Path) -> None:
    fakessh.add_host(servers, "alice@h4", mode="hang")
    begin = time.monotonic()
    with pytest.raises(EngineUnreachable) as caught:
        remote.run_json(host("h4"), ["ls", "--json"], 0.5)
    assert time.monotonic() - begin < 5
    assert caught.value.message == "h4 (alice@h4) did not answer within 0.5 s"


def test_an_answer_that_is_not_json_is_a_failure_naming_the_host(servers: Path) -> None:
    folder = fakessh.add_host(servers, "alice@h1", mode="devbox")
    with pytest.raises(DevboxError) as caught:
        remote.run_json(host("h1"), ["--version"], 30)  # prints text
    assert caught.value.message.startswith("h1: devbox answered something that is not JSON")
    assert fakessh.calls(folder)[-1] == ["devbox", "--version"]


# --- versions --------------------------------------------------------------------------


def test_another_minor_version_is_refused_with_the_fix(servers: Path) -> None:
    fakessh.add_host(servers, "alice@h2", version="0.2.0")
    with pytest.raises(Refused) as caught:
        remote.run_json(host("h2"), ["ls", "--json"], 10)
    assert caught.value.message == (
        f"h2 runs devbox 0.2.0, this is {__version__}: install the same version on both "
        f"(pipx install devbox-gpu=={__version__})"
    )
    assert caught.value.exit_code == 3


def test_another_patch_release_is_fine_and_checked_once_per_master(servers: Path) -> None:
    major, minor, _ = __version__.split(".")
    folder = fakessh.add_host(servers, "alice@h1", version=f"{major}.{minor}.99")
    assert remote.check_version(host("h1"), 10) == f"{major}.{minor}.99"
    remote.run_json(host("h1"), ["ls", "--json"], 10)
    remote.run_json(host("h1"), ["ls", "--json"], 10)
    ls, version = ["devbox", "ls", "--json"], ["devbox", "--version"]
    assert fakessh.calls(folder) == [version, ls, ls]
    # A new connection (the server's devbox reinstalled, the master closed) is checked again.
    config = json.loads((folder / "host.json").read_text())
    (folder / "host.json").write_text(json.dumps({**config, "master": 4343, "version": "0.99.0"}))
    with pytest.raises(Refused):
        remote.run_json(host("h1"), ["ls", "--json"], 10)
    assert fakessh.calls(folder)[3:] == [version]


def test_a_server_without_devbox_on_its_path_says_so() -> None:
    with pytest.raises(EngineUnreachable) as missing:
        remote._decode(host("h1"), remote._Ran(127, "", ["sh: 1: devbox: not found"]))
    assert "no devbox on the PATH" in missing.value.message and "pipx" in (missing.value.hint or "")


# --- fan-out ---------------------------------------------------------------------------


def test_fan_out_keeps_the_hosts_order_and_turns_failures_into_rows(servers: Path) -> None:
    fakessh.add_host(servers, "alice@h1")
    fakessh.add_host(servers, "alice@h2", mode="down")
    fakessh.add_host(servers, "alice@h3", mode="hang")
    fakessh.add_host(servers, "alice@h4")
    four = [host(f"h{i}") for i in range(1, 5)]
    begin = time.monotonic()  # 4 s: room for a loaded machine to start the fake servers
    outcomes = fanout.fan_out(four, lambda h: remote.run_json(h, ["ls", "--json"], 4.0), 4.0)
    assert time.monotonic() - begin < 4.0 + fanout.GRACE_S + 2  # in parallel, bounded by the hung one
    assert [o.host.name for o in outcomes] == ["h1", "h2", "h3", "h4"]
    assert [o.ok for o in outcomes] == [True, False, False, True]
    assert (
        isinstance(outcomes[1].error, EngineUnreachable) and "Connection refused" in outcomes[1].error.message
    )
    assert isinstance(outcomes[2].error, EngineUnreachable) and "within 4 s" in outcomes[2].error.message


def test_fan_out_bounds_a_call_that_ignores_its_timeout_and_a_bug_is_a_row() -> None:
    def call(h: Host) -> str:
        if h.name == "slow":
            time.sleep(30)
        if h.name == "buggy":
            raise KeyError("oops")
        return h.name

    begin = time.monotonic()
    outcomes = fanout.fan_out([host("slow"), host("buggy"), host("fine")], call, 0.2)
    assert time.monotonic() - begin < 0.2 + fanout.GRACE_S + 1
    assert [o.value for o in outcomes] == [None, None, "fine"]
    assert "did not answer within 0.2 s" in str(outcomes[0].error)
    assert "failed unexpectedly: KeyError" in str(outcomes[1].error)


# --- placement -------------------------------------------------------------------------


def caps(**free: int) -> list[autoplace.Capacity]:
    return [
        autoplace.Capacity(host(name), total=4, free=n, free_ids=frozenset(str(i) for i in range(n)))
        for name, n in free.items()
    ]


def test_a_need_comes_from_the_flag_or_the_rendered_profile() -> None:
    assert autoplace.need_from_flag("2") == autoplace.GpuNeed("count", 2)
    assert autoplace.need_from_flag("device=0,3") == autoplace.GpuNeed("devices", devices=("0", "3"))
    assert autoplace.need_from_flag("none") == autoplace.GpuNeed("none")
    assert autoplace.need_from_flag("0") is None and autoplace.need_from_flag("lots") is None
    rendered = {"gpu_request": {"kind": "count", "count": 3, "devices": []}}
    assert autoplace.need_from_render(rendered) == autoplace.GpuNeed("count", 3)


def test_fits() -> None:
    two, full = caps(a=2, b=4)
    assert two.fits(autoplace.GpuNeed("count", 2)) and not two.fits(autoplace.GpuNeed("count", 3))
    assert full.fits(autoplace.GpuNeed("all")) and not two.fits(autoplace.GpuNeed("all"))
    assert two.fits(autoplace.GpuNeed("devices", devices=("1",)))
    assert not two.fits(autoplace.GpuNeed("devices", devices=("3",)))
    assert autoplace.Capacity(host("none")).fits(autoplace.GpuNeed())  # no GPUs, none asked
    down = autoplace.Capacity(host("x"), error=EngineUnreachable("gone"))
    assert not down.fits(autoplace.GpuNeed())


def test_the_draw_spreads_by_free_gpus_instead_of_herding() -> None:
    rng = random.Random(7)
    need = autoplace.GpuNeed("count", 1)
    counts = {"a": 0, "b": 0, "c": 0}
    for _ in range(3000):
        counts[autoplace.draw(caps(a=1, b=1, c=2), need, rng).host.name] += 1
    assert 600 < counts["a"] < 900 and 600 < counts["b"] < 900 and 1300 < counts["c"] < 1700


def test_no_capacity_tries_the_next_host_and_reports_where_it_went() -> None:
    tried: list[str] = []

    def up(h: Host) -> str:
        tried.append(h.name)
        if len(tried) == 1:
            raise NoCapacity(f"{h.name}: no free GPU")
        return f"box on {h.name}"

    placed = autoplace.place(caps(a=1, b=3), autoplace.GpuNeed("count", 1), up, random.Random(1))
    assert len(tried) == 2 and tried[0] != tried[1]
    assert placed.result == f"box on {tried[1]}" and [h.name for h, _ in placed.tried] == tried[:1]
    assert placed.describe() == f"placed on {tried[1]} ({placed.capacity.free} of 4 GPUs were free)"


def test_a_refusal_ends_the_placement_at_once() -> None:
    def up(h: Host) -> str:
        raise Refused("the policy says no")

    with pytest.raises(Refused):
        autoplace.place(caps(a=1, b=1), autoplace.GpuNeed("count", 1), up)


def test_no_host_taking_it_is_no_capacity_naming_each_host() -> None:
    def up(h: Host) -> str:
        raise NoCapacity(f"{h.name}: no free GPU: asked for 2, 1 of 4 free")

    capacities = [*caps(a=2, b=0), autoplace.Capacity(host("c"), error=EngineUnreachable("c: gone"))]
    with pytest.raises(NoCapacity) as caught:
        autoplace.place(capacities, autoplace.GpuNeed("count", 2), up)
    assert caught.value.exit_code == 4
    assert caught.value.message == (
        "no host could take a box with 2 GPUs: a: no free GPU: asked for 2, 1 of 4 free; "
        "b: 0 of 4 GPUs are free; c: gone"
    )
    nobody = [autoplace.Capacity(host("c"), error=EngineUnreachable("c: gone"))]
    with pytest.raises(EngineUnreachable):
        autoplace.place(nobody, autoplace.GpuNeed("count", 1), up)


def test_survey_reads_free_gpus_and_a_server_without_gpus(servers: Path) -> None:
    fakessh.add_host(servers, "alice@h1", gpus=2)
    fakessh.add_host(servers, "alice@h2", gpus=0)
    fakessh.add_host(servers, "alice@h3", mode="down")
    remote.run_json(host("h1"), ["up", "nb.yaml", "--json"], 10)
    one, none, down = autoplace.survey([host("h1"), host("h2"), host("h3")], 5)
    assert (one.total, one.free, one.free_ids) == (2, 1, frozenset({"1", "GPU-alice@h1-1"}))
    assert (none.total, none.free, none.usable) == (0, 0, True)
    assert not down.usable


# --- sticky boxes ----------------------------------------------------------------------


def test_a_box_remembers_its_host_until_it_is_down(sandbox: Sandbox) -> None:
    settings = sandbox.settings()
    assert sticky.host_of(settings, "nb") is None
    sticky.remember(settings, "nb", "h2")
    sticky.remember(settings, "train", "h1")
    assert sticky.host_of(settings, "nb") == "h2" and sticky.recorded(settings) == {"nb": "h2", "train": "h1"}
    file = sticky.path(settings)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert "nb: h2\n" in file.read_text()
    sticky.forget(settings, "nb")
    assert sticky.host_of(settings, "nb") is None and sticky.host_of(settings, "train") == "h1"


def test_concurrent_records_lose_nothing(sandbox: Sandbox) -> None:
    settings = sandbox.settings()
    threads = [threading.Thread(target=sticky.remember, args=(settings, f"b{i}", "h1")) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sticky.recorded(settings)) == 20


def test_any_hosts_file_loads_or_is_invalid_input(sandbox: Sandbox) -> None:
    import json as stdlib_json

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    names = st.one_of(st.text(max_size=12), st.integers(), st.booleans(), st.none())
    values = st.one_of(
        st.text(max_size=40),
        st.from_regex(r"ssh://([a-z.$-]{0,8}@)?[a-z0-9:.\[\]_-]{0,20}(:[0-9]{0,6})?/?", fullmatch=True),
        st.integers(),
        st.lists(st.text(max_size=5), max_size=2),
        st.none(),
    )

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(st.dictionaries(names.map(str), values, max_size=4), values))
    def load(document: object) -> None:
        sandbox.write("home/.config/devbox/hosts.yaml", stdlib_json.dumps(document))  # JSON is YAML
        try:
            found = hosts.load(sandbox.settings())
        except InvalidInput as exc:
            assert exc.problems and all(p.origin.source.endswith("hosts.yaml") for p in exc.problems)
            return
        for entry in found.values():
            assert entry.target is None or not entry.target.startswith("-")
            assert entry.port is None or 1 <= entry.port <= 65535

    load()
