"""Reaching boxes (issue 12): tunnel argv and ports, the proxy's relay, ssh-config entries.

The command-level tests run the real `devbox` in a subprocess with a stand-in `ssh` first on
PATH: it answers `devbox version/info` like a server, forwards `-L` ports for real, and
echoes a `devbox proxy` stream, so the commands are exercised end to end without a server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from devbox import __version__
from devbox.access import sshaccess, sshkeys, tunnel
from devbox.cli.commands import app
from devbox.engine.fake import FakeEngine
from devbox.errors import DevboxError, InvalidInput, NotFound
from devbox.ui import json as shapes
from tests import shapes as contract
from tests.conftest import Sandbox

ROOT = Path(__file__).parents[2]
TOKEN = "c0ffee" * 8
BASE = ["ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=auto", "-o", "ControlPath=/run/x/%C", "alice@gpu2"]


# --- forwards and ssh command lines ---------------------------------------------------------


def forward(remote_port: int = 32768, local_port: int = 50001, name: str = "jupyter") -> tunnel.Forward:
    return tunnel.Forward(name, 8888, "127.0.0.1", remote_port, local_port)


def test_forward_spec_binds_loopback_on_both_sides() -> None:
    assert forward().spec() == "127.0.0.1:50001:127.0.0.1:32768"
    v6 = tunnel.Forward("ssh", 22, "::1", 32769, 50002)
    assert v6.spec() == "127.0.0.1:50002:[::1]:32769"


def test_foreground_argv_is_its_own_connection_with_options_first() -> None:
    argv = tunnel.foreground_argv(BASE, [forward(), forward(32769, 50002, "ssh")])
    assert argv[0] == "ssh" and argv[-1] == "alice@gpu2"
    # ssh keeps the first value of an option: ours come before the shared master's.
    assert argv.index("ControlPath=none") < argv.index("ControlPath=/run/x/%C")
    assert argv.index("ControlMaster=no") < argv.index("ControlMaster=auto")
    assert "-N" in argv and "ExitOnForwardFailure=yes" in argv
    specs = [argv[i + 1] for i, a in enumerate(argv) if a == "-L"]
    assert specs == ["127.0.0.1:50001:127.0.0.1:32768", "127.0.0.1:50002:127.0.0.1:32769"]


def test_background_argv_is_a_master_of_its_own() -> None:
    control = Path("/run/x/tunnel-abc")
    argv = tunnel.background_argv(BASE, [forward()], control)
    assert argv[1:6] == ["-f", "-N", "-M", "-S", str(control)]
    assert argv.index("ControlPersist=no") < len(argv) - 1 and argv[-1] == "alice@gpu2"
    assert tunnel.stop_argv(BASE, control)[1:5] == ["-S", str(control), "-O", "exit"]
    assert tunnel.check_argv(BASE, control)[1:5] == ["-S", str(control), "-O", "check"]


def test_control_socket_is_short_and_per_box() -> None:
    folder = Path("/run/user/1000/devbox-ssh")
    a = tunnel.control_socket(folder, "h2", "a" * 60)
    assert a.parent == folder and len(a.name) < 30
    assert a != tunnel.control_socket(folder, "h3", "a" * 60)


# --- ports and URLs -------------------------------------------------------------------------


def test_published_ports_are_reached_on_the_servers_loopback() -> None:
    ports: dict[str, dict[str, object]] = {
        "jupyter": {"container": 8888, "host_port": 32768, "address": "127.0.0.1"},
        "ssh": {"container": 22, "host_port": 32769, "address": "0.0.0.0"},
        "tb": {"container": 6006, "host_port": 32770, "address": "::"},
        "unpublished": {"container": 9000, "host_port": None, "address": None},
    }
    found = tunnel.published_ports(ports)
    assert [(p.name, p.address, p.port) for p in found] == [
        ("jupyter", "127.0.0.1", 32768),
        ("ssh", "127.0.0.1", 32769),
        ("tb", "::1", 32770),
    ]


def test_plan_forwards_every_port_or_those_asked_for() -> None:
    ports = tunnel.published_ports(
        {
            "jupyter": {"container": 8888, "host_port": 32768, "address": "127.0.0.1"},
            "ssh": {"container": 22, "host_port": 32769, "address": "127.0.0.1"},
        }
    )
    picks = iter([41001, 41002])
    every = tunnel.plan(ports, [], "exp1", pick=lambda: next(picks))
    assert [(f.name, f.local_port, f.remote_port) for f in every] == [
        ("jupyter", 41001, 32768),
        ("ssh", 41002, 32769),
    ]
    by_number = tunnel.plan(ports, tunnel.parse_wanted(["22"]), "exp1", pick=lambda: 41003)
    assert [(f.name, f.local_port) for f in by_number] == [("ssh", 41003)]
    free = tunnel.free_port()
    fixed = tunnel.plan(ports, tunnel.parse_wanted([f"jupyter={free}"]), "exp1")
    assert [(f.name, f.local_port) for f in fixed] == [("jupyter", free)]
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        with pytest.raises(DevboxError, match=f"port {busy} is in use on this machine"):
            tunnel.plan(ports, tunnel.parse_wanted([f"jupyter={busy}"]), "exp1")
    with pytest.raises(NotFound, match="no port 'tensorboard'") as caught:
        tunnel.plan(ports, tunnel.parse_wanted(["tensorboard"]), "exp1")
    assert caught.value.hint == "its published ports: jupyter, ssh"
    with pytest.raises(NotFound, match="publishes no port"):
        tunnel.plan([], [], "exp1")


@pytest.mark.parametrize("value", ["=8888", "jupyter=", "jupyter=x", "jupyter=70000"])
def test_bad_port_values_are_invalid_input(value: str) -> None:
    with pytest.raises(InvalidInput, match="NAME=LOCALPORT"):
        tunnel.parse_wanted([value])


def test_free_port_is_free() -> None:
    port = tunnel.free_port()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # nobody holds it


def test_the_url_points_at_the_local_port_and_keeps_the_token() -> None:
    url = f"http://127.0.0.1:32768/lab?token={TOKEN}#cell"
    assert tunnel.rewrite_url(url, "127.0.0.1", 41001) == f"http://127.0.0.1:41001/lab?token={TOKEN}#cell"
    assert tunnel.rewrite_url(url, "::1", 41001) == f"http://[::1]:41001/lab?token={TOKEN}#cell"
    assert tunnel.url_port(url) == 32768
    assert (
        tunnel.local_url(url, [forward(32768, 41001)], 32768)
        == f"http://127.0.0.1:41001/lab?token={TOKEN}#cell"
    )
    assert tunnel.local_url(url, [forward(32769, 41001)], 32768) is None  # Jupyter not forwarded


# --- the relay -----------------------------------------------------------------------------


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that echoes each connection's bytes, then closes after its EOF."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(4096):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def test_relay_copies_both_ways_until_the_socket_ends(echo_server: int) -> None:
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    sock = tunnel.connect("127.0.0.1", echo_server)
    relay = threading.Thread(target=tunnel.relay, args=(sock, in_read, out_write))
    relay.start()
    payload = b"SSH-2.0-OpenSSH_9.2\r\n" + bytes(range(256)) * 1000  # more than a pipe holds
    received = bytearray()

    def drain() -> None:
        while chunk := os.read(out_read, 65536):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    os.write(in_write, payload[:100])
    view = memoryview(payload)[100:]
    while view:
        view = view[os.write(in_write, view) :]
    os.close(in_write)  # EOF: the relay half-closes, the echo server answers the rest and closes
    relay.join(10)
    assert not relay.is_alive()
    sock.close()
    os.close(out_write)
    reader.join(10)
    assert bytes(received) == payload
    os.close(in_read)
    os.close(out_read)


def test_wait_listening(echo_server: int) -> None:
    assert tunnel.wait_listening([forward(local_port=echo_server)], lambda: True, timeout=5)
    closed = tunnel.free_port()
    assert not tunnel.wait_listening([forward(local_port=closed)], lambda: False, timeout=5)
    start = time.monotonic()
    assert not tunnel.wait_listening([forward(local_port=closed)], lambda: True, timeout=0.3)
    assert time.monotonic() - start < 3


# --- ssh-config entries ---------------------------------------------------------------------


def test_entry_block_reaches_the_box_through_the_proxy_with_its_key_pinned() -> None:
    proxy = sshaccess.proxy_command(["/opt/devbox/bin/devbox"], "exp1", "h2")
    block = sshaccess.entry_block(
        "exp1",
        "alice",
        "devbox-alice-exp1@h2",
        "/home/a/.config/devbox/known_hosts",
        "/home/a/.ssh/id_ed25519",
        proxy,
    )
    lines = [line.strip() for line in block.splitlines()]
    assert lines[0] == "Host devbox-exp1"
    assert "ProxyCommand /opt/devbox/bin/devbox proxy exp1 --host h2" in lines
    assert "HostKeyAlias devbox-alice-exp1@h2" in lines
    assert "UserKnownHostsFile /home/a/.config/devbox/known_hosts" in lines
    assert "StrictHostKeyChecking yes" in lines and "User alice" in lines
    assert "IdentityFile /home/a/.ssh/id_ed25519" in lines and "IdentitiesOnly yes" in lines
    # Nothing that changes when the box restarts or moves: no port, no address.
    assert not [line for line in lines if line.split()[0] in ("Port", "HostName")]


def test_proxy_command_is_quoted_for_the_shell_and_for_ssh() -> None:
    proxy = sshaccess.proxy_command(["/opt/my tools/devbox"], "exp1")
    assert proxy == "'/opt/my tools/devbox' proxy exp1"
    assert (
        sshaccess.proxy_command(["/opt/100%/devbox"], "exp1", "local")
        == "/opt/100%%/devbox proxy exp1 --host local"
    )
    block = sshaccess.entry_block("x", "u", "a", "/my home/known_hosts", None, proxy)
    assert 'UserKnownHostsFile "/my home/known_hosts"' in block and "IdentityFile" not in block


def test_writing_one_servers_entries_keeps_the_others() -> None:
    def block(name: str, host: str) -> str:
        return sshaccess.entry_block(
            name, "u", "a", "/k", None, sshaccess.proxy_command(["devbox"], name, host)
        )

    include = "# header\n\n" + "\n".join(
        [block("a", "local"), block("b", "h2"), block("c", "h3"), block("d", "h2")]
    )
    include += "Host devbox-old\n  HostName 127.0.0.1\n  Port 32768\n"  # from before ProxyCommand: stale
    kept = sshaccess.other_entries(include, "h2", {"c"})
    assert kept == [block("a", "local")]  # c is rewritten too (it moved to h2); old had no server
    assert [sshaccess.entry_host(b) for b in (block("a", "local"), block("b", "h2"))] == ["local", "h2"]


def test_a_remote_box_has_an_alias_of_its_own() -> None:
    # A box of the same owner and name on this machine keeps its own pinned key.
    assert sshaccess.remote_alias("alice", "exp1", "h2") != sshkeys.host_alias("alice", "exp1")


# --- the commands, with a stand-in ssh -------------------------------------------------------

FAKE_SSH = r'''#!{python}
"""A stand-in ssh: logs its argv, forwards -L ports, answers like a devbox server."""
import json, os, signal, socket, sys, threading
args = sys.argv[1:]
with open(os.environ["FAKE_SSH_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
valued = {{"-o", "-p", "-L", "-S", "-O", "-i", "-J", "-F", "-l"}}
forwards, words, i = [], [], 0
while i < len(args):
    if args[i] in valued:
        if args[i] == "-L":
            forwards.append(args[i + 1])
        i += 2
    elif args[i].startswith("-"):
        i += 1
    else:
        words.append(args[i])
        i += 1
command = " ".join(words[1:])

def pipe(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass

def serve(server, port):
    while True:
        conn, _ = server.accept()
        upstream = socket.create_connection(("127.0.0.1", port))
        threading.Thread(target=pipe, args=(conn, upstream), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()

if forwards:
    for spec in forwards:
        local_address, local_port, _, remote_port = spec.split(":")
        server = socket.create_server((local_address, int(local_port)))
        threading.Thread(target=serve, args=(server, int(remote_port)), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.pause()
elif command == "devbox --version":
    print("devbox {version}")
elif command.startswith("devbox version"):
    print(json.dumps({{"version": "{version}"}}))
elif command.startswith("devbox info"):
    print(os.environ["FAKE_SSH_INFO"])
elif command.startswith("devbox proxy"):
    while data := os.read(0, 65536):
        os.write(1, data)
else:
    print(command)
'''


class _Jupyter(BaseHTTPRequestHandler):
    """/api/status: 200 with the token, 403 without (as Jupyter answers)."""

    def do_GET(self) -> None:
        ok = f"token={TOKEN}" in self.path
        self.send_response(200 if ok else 403)
        self.end_headers()
        self.wfile.write(b'{"started": "now"}' if ok else b"forbidden")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server_side(sandbox: Sandbox, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A host h2 in hosts.yaml, a stand-in ssh on PATH, and a 'box port' answering like Jupyter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ssh"
    fake.write_text(FAKE_SSH.format(python=sys.executable, version=__version__))
    fake.chmod(0o755)
    jupyter = ThreadingHTTPServer(("127.0.0.1", 0), _Jupyter)
    threading.Thread(target=jupyter.serve_forever, daemon=True).start()
    port = jupyter.server_address[1]
    info = {
        "name": "exp1",
        "status": "running",
        "ports": {"jupyter": {"container": 8888, "host_port": port, "address": "127.0.0.1"}},
        "jupyter": {"url": f"http://127.0.0.1:{port}/lab?token={TOKEN}", "token": TOKEN, "auth": "token"},
    }
    config = sandbox.home / ".config" / "devbox"
    config.mkdir(parents=True)
    (config / "hosts.yaml").write_text("h2: ssh://alice@h2.example\n")
    env = {
        **os.environ,
        **sandbox.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "FAKE_SSH_LOG": str(tmp_path / "ssh.log"),
        "FAKE_SSH_INFO": json.dumps(info),
        "XDG_RUNTIME_DIR": str(tmp_path),
    }
    yield env
    jupyter.shutdown()


def ssh_calls(env: dict[str, str]) -> list[list[str]]:
    log = Path(env["FAKE_SSH_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def devbox_popen(env: dict[str, str], *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    # A session of its own: a failed test kills devbox and the ssh it started together.
    return subprocess.Popen(
        [sys.executable, "-m", "devbox", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        start_new_session=True,
        **kwargs,
    )


def first_json(stream: Any) -> Any:
    """The first JSON document on a stream that stays open (print_json indents it)."""
    text = ""
    for line in stream:
        text += line
        if line.startswith("}"):
            return json.loads(text)
    raise AssertionError(f"no JSON document in {text!r}")


def get(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_tunnel_forwards_until_ctrl_c_and_prints_the_local_url(server_side: dict[str, str]) -> None:
    proc = devbox_popen(server_side, "tunnel", "exp1", "--host", "h2", "--json", stderr=subprocess.PIPE)
    try:
        doc = first_json(proc.stdout)
        [port] = doc["ports"]
        assert (doc["host"], doc["local"], doc["background"], doc["stop"]) == ("h2", False, False, None)
        assert (
            port["local"] == f"127.0.0.1:{port['local_port']}" and port["remote_port"] != port["local_port"]
        )
        url = doc["jupyter_url"]
        assert url == f"http://127.0.0.1:{port['local_port']}/lab?token={TOKEN}"
        # Must show 3: through the printed URL, /api/status answers 200 with the token, 403 without.
        assert get(url.replace("/lab?", "/api/status?")) == 200
        assert get(f"http://127.0.0.1:{port['local_port']}/api/status") == 403
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    info, version_or_forward = ssh_calls(server_side)[-2:]  # (version check,) info, forward
    assert info[-2:] == ["alice@h2.example", "devbox info exp1 --host local --json"]
    assert (
        "-N" in version_or_forward
        and f"127.0.0.1:{port['local_port']}:127.0.0.1:{port['remote_port']}" in (version_or_forward)
    )
    with pytest.raises(OSError):  # ssh went with it
        socket.create_connection(("127.0.0.1", port["local_port"]), timeout=1).close()


def test_tunnel_of_a_stopped_box_says_so(server_side: dict[str, str]) -> None:
    info = json.loads(server_side["FAKE_SSH_INFO"])
    env = {**server_side, "FAKE_SSH_INFO": json.dumps({**info, "status": "exited"})}
    result = subprocess.run(
        [sys.executable, "-m", "devbox", "tunnel", "exp1", "--host", "h2"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "box 'exp1' on h2 is exited" in result.stderr


def test_proxy_of_a_remote_box_runs_the_servers_devbox_proxy(server_side: dict[str, str]) -> None:
    Path(server_side["HOME"], ".config/devbox/boxes.yaml").write_text("exp1: h2\n")  # made there
    stream = b"SSH-2.0-OpenSSH_9.2\r\n" + os.urandom(5000)
    result = subprocess.run(
        [sys.executable, "-m", "devbox", "proxy", "exp1"], env=server_side, input=stream, capture_output=True
    )
    assert result.returncode == 0 and result.stdout == stream and result.stderr == b""
    [call] = ssh_calls(server_side)
    assert call[-2:] == ["alice@h2.example", "devbox proxy exp1 --host local"]


def test_ssh_to_a_remote_box_goes_through_the_servers_devbox(server_side: dict[str, str]) -> None:
    args = ["ssh", "exp1", "--host", "h2", "--", "echo", "a b"]
    result = subprocess.run(
        [sys.executable, "-m", "devbox", *args], env=server_side, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "devbox ssh --host local exp1 -- echo 'a b'"


# --- ssh-config with local and remote boxes (in process, fake engine) ------------------------


@pytest.fixture
def fake(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    engine = FakeEngine()
    engine.add_image("devbox/devbox:0.1", {"devbox.protocol": "1"})
    monkeypatch.setattr("devbox.engine.connect", lambda timeout=60: engine)
    return engine


def _remote_answer(
    name: str, owner: str = "alice", key: str | None = "ecdsa-sha2-nistp256 AAAAremote"
) -> Any:
    entry = {
        "name": name,
        "container": f"devbox-{owner}-{name}",
        "owner": owner,
        "host": "unix:///var/run/docker.sock",
        "created": 1,
        "created_iso": "x",
        "ssh_host": f"devbox-{name}",
        "address": "127.0.0.1",
        "port": 32770,
        "user": "alice",
        "host_key_alias": f"devbox-{owner}-{name}",
        "known_hosts": "/home/alice/.config/devbox/known_hosts",
        "identity_file": "/nonexistent/id_rsa_devbox",
        "host_public_key": key,
        "proxy_command": f"/usr/local/bin/devbox proxy {name} --host local",
    }
    return {"entries": [entry], "file": None, "included_from": None}


def test_ssh_config_writes_remote_boxes_with_their_pinned_keys(
    sandbox: Sandbox, fake: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = sandbox.home / ".config" / "devbox"
    config.mkdir(parents=True)
    (config / "hosts.yaml").write_text("h2: ssh://alice@h2.example\nh3: ssh://h3.example\n")
    (config / "boxes.yaml").write_text("exp1: h2\nexp2: h3\n")
    asked: list[tuple[str, list[str]]] = []

    def run_json(host: Any, args: list[str], timeout: float | None, **_: Any) -> Any:
        asked.append((host.name, args))
        if host.name == "h3":
            from devbox.errors import EngineUnreachable

            raise EngineUnreachable("cannot reach h3")
        return _remote_answer("exp1")

    monkeypatch.setattr("devbox.ops.remote.run_json", run_json)
    result = CliRunner().invoke(app, ["ssh-config", "--json"])
    assert result.exit_code == 6  # h3 did not answer: its box is left out, the rest is printed
    assert asked == [("h2", ["ssh-config", "--host", "local", "--json"]), ("h3", asked[1][1])]
    doc = contract.parse(result.stdout, shapes.SshConfigJson)
    [entry] = doc["entries"]
    assert (entry["host"], entry["host_key_alias"], entry["identity_file"]) == (
        "h2",
        "devbox-alice-exp1@h2",
        None,
    )
    assert entry["proxy_command"].endswith("proxy exp1 --host h2")
    assert "devbox-alice-exp1@h2 ecdsa-sha2-nistp256 AAAAremote" in (config / "known_hosts").read_text()

    printed = CliRunner().invoke(app, ["ssh-config"]).stdout
    assert "Host devbox-exp1\n" in printed and "ProxyCommand " in printed and "Port " not in printed


def test_local_entries_use_the_proxy_too(sandbox: Sandbox, fake: FakeEngine) -> None:
    from devbox.ops import reach

    box = sandbox.write("work/sshbox.yaml", "image: devbox/devbox:0.1\nports: {ssh: 22}\n")
    assert CliRunner().invoke(app, ["up", str(box), "--json"]).exit_code == 0
    found = reach.ssh_entries(sandbox.settings(), ["/usr/bin/devbox"])
    [entry] = found.local
    assert "ProxyCommand /usr/bin/devbox proxy sshbox --host local" in entry.block
    assert (
        "Port" not in entry.block and f"HostKeyAlias {sshkeys.host_alias('alice', 'sshbox')}" in entry.block
    )
    address, port = reach.ssh_port(fake, sandbox.settings(), "sshbox")
    assert (address, port) == ("127.0.0.1", fake.find("devbox-alice-sshbox", "alice").port("ssh").host)  # type: ignore[union-attr]


def test_tunnel_to_a_box_here_forwards_nothing(sandbox: Sandbox, fake: FakeEngine) -> None:
    box = sandbox.write("work/nb.yaml", "image: devbox/devbox:0.1\nports: {jupyter: 8888, ssh: 22}\n")
    up = json.loads(CliRunner().invoke(app, ["up", str(box), "--json"]).stdout)
    result = CliRunner().invoke(app, ["tunnel", "nb", "--port", "jupyter", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["local"], doc["host"], doc["jupyter_url"]) == (True, fake.host, up["jupyter"]["url"])
    [port] = doc["ports"]
    assert port["local_port"] == port["remote_port"] == up["ports"]["jupyter"]["host_port"]
    said = CliRunner().invoke(app, ["tunnel", "nb"]).stdout
    assert "no tunnel needed" in said and up["jupyter"]["url"] in said
    missing = CliRunner().invoke(app, ["tunnel", "nb", "--port", "tensorboard"])
    assert missing.exit_code == 5


def test_a_remote_up_pins_the_new_host_key(sandbox: Sandbox) -> None:
    from devbox.ops import reach

    settings = sandbox.settings()
    report = {"name": "exp1", "owner": "alice", "ssh": {"host_public_key": "ecdsa-sha2-nistp256 AAAAnew"}}
    reach.pin_remote(settings, "h2", report)
    assert (
        sshkeys.recorded_host_key(settings.user_config_dir, "devbox-alice-exp1@h2")
        == "ecdsa-sha2-nistp256 AAAAnew"
    )
    reach.pin_remote(
        settings, "h2", {"name": "exp2", "owner": "alice", "ssh": None}
    )  # no ssh: nothing pinned
    assert sshkeys.recorded_host_key(settings.user_config_dir, "devbox-alice-exp2@h2") is None
