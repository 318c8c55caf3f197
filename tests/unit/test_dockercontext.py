"""Docker contexts (engine/docker/context.py): DOCKER_HOST, then DOCKER_CONTEXT, then
`docker context use`, as the docker CLI picks; a missing context is an error naming it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from devbox import engine
from devbox.engine.base import EngineUnavailable
from devbox.engine.docker import context


def _context(home: Path, name: str, host: str, tls: bool = False, skip_verify: bool = False) -> None:
    """A context as `docker context create NAME --docker host=HOST` stores it."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = home / ".docker" / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": skip_verify}
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}})
    )
    if tls:
        folder = home / ".docker" / "contexts" / "tls" / digest / "docker"
        folder.mkdir(parents=True)
        for pem in ("ca.pem", "cert.pem", "key.pem"):
            (folder / pem).write_text("x")


def _use(home: Path, name: str) -> None:
    (home / ".docker").mkdir(exist_ok=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {}, "currentContext": name}))


def test_no_context_is_the_local_socket(tmp_path: Path) -> None:
    assert context.endpoint({"HOME": str(tmp_path)}) == context.Endpoint(context.DEFAULT_HOST)


def test_docker_context_names_the_engine(tmp_path: Path) -> None:
    _context(tmp_path, "remote", "tcp://10.0.0.5:2375")
    found = context.endpoint({"HOME": str(tmp_path), "DOCKER_CONTEXT": "remote"})
    assert (found.host, found.context, found.source) == ("tcp://10.0.0.5:2375", "remote", "DOCKER_CONTEXT")
    assert found.shown == "tcp://10.0.0.5:2375 (docker context remote)"
    assert found.env == {"DOCKER_HOST": "tcp://10.0.0.5:2375"}


def test_the_current_context_of_docker_context_use(tmp_path: Path) -> None:
    _context(tmp_path, "other", "unix:///run/other.sock")
    _use(tmp_path, "other")
    found = context.endpoint({"HOME": str(tmp_path)})
    assert (found.host, found.source) == ("unix:///run/other.sock", "docker context use")


def test_precedence_is_the_docker_clis(tmp_path: Path) -> None:
    _context(tmp_path, "a", "unix:///a.sock")
    _context(tmp_path, "b", "unix:///b.sock")
    _use(tmp_path, "a")
    home = {"HOME": str(tmp_path)}
    assert context.endpoint({**home, "DOCKER_CONTEXT": "b"}).host == "unix:///b.sock"  # beats use
    both = {**home, "DOCKER_CONTEXT": "b", "DOCKER_HOST": "unix:///h.sock"}
    found = context.endpoint(both)  # DOCKER_HOST beats both, and errors say it does
    assert (found.host, found.context, found.env) == ("unix:///h.sock", None, {})
    assert found.shown == "unix:///h.sock (DOCKER_HOST, which overrides DOCKER_CONTEXT=b)"
    assert context.endpoint({"DOCKER_HOST": "unix:///h.sock"}).shown == "unix:///h.sock"
    assert context.endpoint({**home, "DOCKER_CONTEXT": "default"}).host == context.DEFAULT_HOST


def test_docker_config_moves_the_store(tmp_path: Path) -> None:
    _context(tmp_path, "c", "unix:///c.sock")
    config = tmp_path / ".docker"
    found = context.endpoint({"HOME": "/nonexistent", "DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "c"})
    assert found.host == "unix:///c.sock"


def test_a_tls_context_gives_docker_py_its_certificates(tmp_path: Path) -> None:
    _context(tmp_path, "secure", "tcp://h:2376", tls=True)
    _context(tmp_path, "lax", "tcp://h:2376", tls=True, skip_verify=True)
    secure = context.endpoint({"HOME": str(tmp_path), "DOCKER_CONTEXT": "secure"})
    assert secure.env["DOCKER_TLS_VERIFY"] == "1"
    assert Path(secure.env["DOCKER_CERT_PATH"], "ca.pem").is_file()
    lax = context.endpoint({"HOME": str(tmp_path), "DOCKER_CONTEXT": "lax"})
    assert "DOCKER_TLS_VERIFY" not in lax.env and "DOCKER_CERT_PATH" in lax.env


def test_a_missing_context_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DOCKER_CONTEXT", "nosuch")
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    with pytest.raises(EngineUnavailable) as caught:
        engine.connect()
    assert caught.value.message == "docker context 'nosuch' (from DOCKER_CONTEXT) does not exist"
    assert "docker context ls" in (caught.value.hint or "")
    _use(tmp_path, "gone")
    monkeypatch.delenv("DOCKER_CONTEXT")
    with pytest.raises(EngineUnavailable, match=r"'gone' \(from docker context use\)"):
        engine.connect()


def test_a_context_without_a_docker_endpoint_says_so(tmp_path: Path) -> None:
    folder = tmp_path / ".docker" / "contexts" / "meta" / hashlib.sha256(b"k8s").hexdigest()
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text('{"Name": "k8s", "Endpoints": {}}')
    with pytest.raises(context.ContextError, match="names no Docker engine"):
        context.endpoint({"HOME": str(tmp_path), "DOCKER_CONTEXT": "k8s"})


def test_a_context_engine_connects_and_errors_name_the_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _context(tmp_path, "dead", f"unix://{tmp_path}/no.sock")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DOCKER_CONTEXT", "dead")
    eng = engine.connect()
    assert eng.host == f"unix://{tmp_path}/no.sock" and engine.context_name() == "dead"
    with pytest.raises(EngineUnavailable) as caught:
        eng.list_boxes(None)
    assert "(docker context dead)" in caught.value.message
    assert "docker context ls" in (caught.value.hint or "")


def test_a_buildkit_build_reaches_a_tls_context_with_its_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without them the docker CLI talks plain HTTP to the TLS port, the BuildKit probe fails
    # and every build silently falls back to the classic builder.
    from devbox.engine.docker import buildkit

    _context(tmp_path, "secure", "tcp://10.0.0.5:2376", tls=True)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DOCKER_CONTEXT", "secure")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    env = buildkit._env("tcp://10.0.0.5:2376")
    assert env["DOCKER_HOST"] == "tcp://10.0.0.5:2376" and env["DOCKER_TLS_VERIFY"] == "1"
    assert env["DOCKER_CERT_PATH"].endswith("/docker") and Path(env["DOCKER_CERT_PATH"], "ca.pem").is_file()


def test_the_engines_ca_wins_over_requests_ca_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Many hosts set REQUESTS_CA_BUNDLE for a proxy; requests would verify the engine with it.
    from devbox.engine.docker import dockerpy

    docker = dockerpy.import_docker()
    for pem in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / pem).write_text("x")
    for key, value in {
        "DOCKER_HOST": "tcp://127.0.0.1:2376",
        "DOCKER_CERT_PATH": str(tmp_path),
        "DOCKER_TLS_VERIFY": "1",
        "REQUESTS_CA_BUNDLE": "/etc/proxy-ca.pem",
    }.items():
        monkeypatch.setenv(key, value)
    asked: list[str] = []

    def version(self: object) -> str:
        # The first request already verifies with the engine's CA.
        asked.append(self.merge_environment_settings("https://x/version", {}, False, None, None)["verify"])  # type: ignore[attr-defined]
        return "1.41"

    monkeypatch.setattr(docker.APIClient, "_retrieve_server_version", version)
    api = dockerpy.client()
    settings = api.merge_environment_settings("https://127.0.0.1:2376/version", {}, False, None, None)
    assert settings["verify"] == str(tmp_path / "ca.pem") and api._version == "1.41"
    assert asked == [str(tmp_path / "ca.pem")]
