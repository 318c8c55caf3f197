"""Credentials parsed from real Jupyter logs (tests/fixtures/logs, see its README)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devbox.access.credentials import LogScanner, parse_jupyter_url, scan
from devbox.profile.model import CredentialPattern

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"

# fixture: (token or None, base_url, auth)
JUPYTER = {
    "notebook5.log": ("6453107dc8181f9c679e0c400d679e849bdadf40080bd60b", "/", "token"),
    "notebook6.log": ("f79946a64990ac960bae4e5fdf0fa6b5d8f75e2e8095a11d", "/", "token"),
    "notebook6-base-url.log": ("2742596a8ae07a017dedb532f17196ab74186c7ed21014e0", "/user/alice/", "token"),
    "notebook6-tty.log": ("79be44261e4f30d50ddd2141f971aed0c7ac76bd8142cd3e", "/", "token"),
    "notebook6-no-auth.log": (None, "/", "none"),
    "notebook6-env-token.log": (None, "/", "token"),
    "jupyter-server1.log": ("a8745c4be0db83d9f20b1396ad6f8c2ddb3c3e6b862480c8", "/", "token"),
    "lab4.log": ("9210c0567a68acdff14ff4781e91319d98afe99e2c01ca7c", "/", "token"),
    "lab4-base-url.log": ("46b330f0bc0e132f8b7df58a783cdfac78a8c6dc1d7d1e54", "/jupyter/", "token"),
    "lab4-env-token.log": (None, "/", "token"),
    "lab4-no-auth.log": (None, "/", "none"),
    "lab4-ip-localhost.log": ("6019ac8aa7616026894da451c62b2b9bdceabcfff711e91e", "/", "token"),
    "lab4-ipv6.log": ("1fd314c3c347b615b722f67e2a8a64317e4924cd5f71c626", "/", "token"),
    "lab4-server.log": ("021f8eb4f7cdde67f60b324d0bdc71a3bdb2892b15aa967c", "/", "token"),
    "lab4-tty.log": ("2f3fef24d8fd06d227c22d09633f56959fa8434674ee0ff8", "/", "token"),
    "notebook7.log": ("ef19ac46b18be1bf1095cdfcb9ea79d318688383bd10b10d", "/", "token"),
}


def test_every_fixture_is_covered() -> None:
    assert sorted(p.name for p in LOGS.glob("*.log")) == sorted(JUPYTER)


@pytest.mark.parametrize("fixture", sorted(JUPYTER))
def test_jupyter_login_from_real_logs(fixture: str) -> None:
    token, base_url, auth = JUPYTER[fixture]
    lines = (LOGS / fixture).read_text().splitlines(keepends=True)
    scanner = LogScanner(expect_jupyter=True)
    last = ""
    for line in lines:
        scanner.feed(line)
        last = line
        if scanner.ready:
            break
    found = scanner.found.jupyter
    assert found is not None, "no URL found"
    assert (found.token, found.base_url, found.auth, found.port) == (token, base_url, auth, 8888)
    assert found.token_hidden is (auth == "token" and token is None)
    # Ready at the first URL line: devbox reports as soon as the server says where it is.
    assert "http" in last


@pytest.mark.parametrize("fixture", ["lab4-base-url.log", "notebook6.log", "notebook5.log"])
def test_url_is_rewritten_to_the_published_address_and_port(fixture: str) -> None:
    token, base_url, _ = JUPYTER[fixture]
    found = scan((LOGS / fixture).read_text().splitlines()).jupyter
    assert found is not None
    host_side = found.for_host("127.0.0.1", 49153)
    assert host_side.url == f"http://127.0.0.1:49153{base_url}?token={token}"
    assert found.for_host("::1", 5).url.startswith("http://[::1]:5/")


def test_hidden_token_can_be_supplied_later() -> None:
    found = scan((LOGS / "lab4-env-token.log").read_text().splitlines()).jupyter
    assert found is not None and found.token_hidden
    assert found.for_host("127.0.0.1", 1, token="secret123").url == "http://127.0.0.1:1/?token=secret123"
    assert found.for_host("127.0.0.1", 1).token_hidden


def test_auth_disabled_urls_have_no_query() -> None:
    found = scan((LOGS / "lab4-no-auth.log").read_text().splitlines()).jupyter
    assert found is not None
    assert found.for_host("127.0.0.1", 7).url == "http://127.0.0.1:7/"


def test_a_password_protected_server_is_not_token_auth() -> None:
    found = parse_jupyter_url("[I 12:00 ServerApp] http://abc:8888/lab", auth_disabled=False)
    assert found is not None and found.auth == "password" and found.token is None


def test_non_urls_are_ignored() -> None:
    assert (
        parse_jupyter_url("[I ServerApp] Serving notebooks from local directory: /workspace", False) is None
    )
    scanner = LogScanner(expect_jupyter=True)
    scanner.feed("file:///root/.local/share/jupyter/runtime/nbserver-7-open.html")
    assert not scanner.ready and scanner.missing() == ["jupyter URL"]


def test_ssh_lines() -> None:
    scanner = LogScanner(expect_ssh=True)
    scanner.feed("Starting sshd")
    assert scanner.missing() == ["ssh login"]
    scanner.feed("\x1b[32mSSH user: alice\x1b[0m\r\n")
    scanner.feed("SSH password: hunter2")
    scanner.feed("256 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s root@box (ED25519)")
    assert scanner.ready
    ssh = scanner.found.ssh
    assert ssh is not None
    assert (ssh.user, ssh.password) == ("alice", "hunter2")
    assert ssh.hostkey == "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"


def test_devbox_ready_line() -> None:
    key = "SHA256:" + "A" * 43
    found = scan([f"devbox-ready ssh user=bob port=22 hostkey={key}"]).ssh
    assert found is not None and (found.user, found.port, found.hostkey) == ("bob", 22, key)


def test_custom_patterns_are_required_and_reported() -> None:
    pattern = CredentialPattern("api_key", r"API key: (?P<value>\w+)")
    scanner = LogScanner(patterns=(pattern,))
    assert scanner.missing() == ["api_key"]
    scanner.feed("API key: k3y")
    assert scanner.ready and scanner.found.custom == {"api_key": "k3y"}
