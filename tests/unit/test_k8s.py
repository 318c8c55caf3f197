"""`devbox render --format k8s`: the Pod and claims, checked offline against Kubernetes' schema.

No API server is reachable here, so `kubernetes-validate` (the published OpenAPI schemas of
each Kubernetes release, as JSON Schema) stands in for `kubectl apply --dry-run=server`, in
strict mode (an unknown field is an error). The schema does not check names, label values or
quantities' spelling; the tests below check those against Kubernetes' own rules.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from devbox.box import k8s
from devbox.cli.commands import app
from devbox.ops import resolve
from devbox.policy import capacity
from devbox.profile.flags import Overrides
from tests.conftest import Sandbox

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = "1.30"  # the oldest release still commonly run; the schemas ship with the package
BUNDLED = sorted(
    p.relative_to(REPO).as_posix()
    for p in [*REPO.glob("profiles/*.yaml"), *REPO.glob("profiles/examples/*.yaml")]
    if p.name != "policy.yaml"  # a policy, not a profile
)
runner = CliRunner()


def validate(document: dict[str, Any]) -> None:
    """Raises kubernetes_validate.ValidationError when Kubernetes' schema refuses `document`."""
    kubernetes_validate.validate(document, KUBERNETES, strict=True)


def check_names(document: dict[str, Any]) -> None:
    """What the API server checks and the schema does not: names, label keys and values."""
    meta = document["metadata"]
    assert k8s.is_dns_label(meta["name"]), meta["name"]
    for key, value in meta.get("labels", {}).items():
        assert k8s.is_qualified_name(key) and k8s.is_label_value(value), (key, value)
    assert all(k8s.is_qualified_name(key) for key in meta.get("annotations", {}))
    if document["kind"] == "Pod":
        spec = document["spec"]
        assert k8s.is_dns_label(spec["hostname"])
        assert all(k8s.is_dns_label(v["name"]) for v in spec.get("volumes", []))
        for port in spec["containers"][0].get("ports", []):
            assert "name" not in port or re.fullmatch(r"[a-z0-9-]{1,15}", port["name"])
        named = [p["name"] for p in spec["containers"][0].get("ports", []) if "name" in p]
        assert len(named) == len(set(named)), named  # the API server refuses a repeated port name


def render(*args: str) -> tuple[list[dict[str, Any]], str, str]:
    """`devbox render ARGS --format k8s`: the documents, the YAML text and stderr."""
    result = runner.invoke(app, ["render", *args, "--format", "k8s"])
    assert result.exit_code == 0, result.output
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    for document in documents:
        validate(document)
        check_names(document)
    return documents, result.stdout, result.stderr


def pod_of(documents: list[dict[str, Any]]) -> dict[str, Any]:
    [pod] = [d for d in documents if d["kind"] == "Pod"]
    return pod


def container_of(documents: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = pod_of(documents)["spec"]["containers"]
    return container


def manifests(sandbox: Sandbox, ref: str, overrides: Overrides | None = None) -> k8s.Manifests:
    resolved = resolve.resolve(ref, sandbox.settings(), overrides)
    return k8s.manifests(resolved.spec, resolved.profile, 1000, 1000)


@pytest.mark.parametrize("profile", BUNDLED)
def test_every_bundled_profile_renders_manifests_kubernetes_accepts(sandbox: Sandbox, profile: str) -> None:
    documents, text, _ = render(str(REPO / profile))
    assert [d["kind"] for d in documents][:1] == ["Pod"]
    assert text.startswith("# devbox render ")


def test_pytorch_gpu_validates_and_says_what_it_left_out(sandbox: Sandbox) -> None:
    """The issue's example: `devbox render pytorch-gpu --format k8s` validates."""
    documents, text, stderr = render("pytorch-gpu")
    assert [d["kind"] for d in documents] == ["Pod", "PersistentVolumeClaim"]
    container = container_of(documents)
    assert container["image"] == "pytorch/pytorch:2.7.0-cuda12.6-cudnn9-runtime"
    assert container["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1}
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}  # GPUs: limits only
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("jupyter", 8888), ("ssh", 22)]
    assert container["workingDir"] == "/workspace"
    assert {"name": "PYTHONUNBUFFERED", "value": "1"} in container["env"]
    # What has no Kubernetes form is said in the YAML's leading comments and on stderr.
    comments = [line for line in text.splitlines() if line.startswith("# ")]
    for said in (comments, stderr.splitlines()):
        joined = "\n".join(said)
        assert "gpus: all" in joined and "nvidia.com/gpu: 1" in joined
        assert "bind mount" in joined and "-> /workspace left out" in joined
        assert "hostPath" in joined
    assert "hostPath" not in json.dumps(documents)


def test_gpus_and_shm_size_become_a_gpu_limit_and_a_memory_emptydir(sandbox: Sandbox) -> None:
    sandbox.write("work/train.yaml", "image: pytorch/pytorch:2.7.0\ngpus: 2\nshm_size: 16g\n")
    documents, _, _ = render("train.yaml")
    pod = pod_of(documents)
    container = container_of(documents)
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 2}}
    [shm] = [v for v in pod["spec"]["volumes"] if v["name"] == "shm"]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert {"name": "shm", "mountPath": "/dev/shm"} in container["volumeMounts"]


def test_ports_whose_kubernetes_names_collide_keep_one_name(sandbox: Sandbox) -> None:
    sandbox.write("work/ports.yaml", "image: devbox/box:0.1\nports:\n  my_port: 8080\n  my-port: 8081\n")
    documents, _, stderr = render("ports.yaml")
    ports = container_of(documents)["ports"]
    assert [(p.get("name"), p["containerPort"]) for p in ports] == [("my-port", 8080), (None, 8081)]
    assert "port my-port: its Kubernetes name my-port is another port's already; unnamed" in stderr


def test_gpu_requests_a_pod_can_and_cannot_say(sandbox: Sandbox) -> None:
    def gpu_limit(result: k8s.Manifests) -> object:
        limits = result.documents[0]["spec"]["containers"][0].get("resources", {}).get("limits", {})
        return limits.get("nvidia.com/gpu")

    every = manifests(sandbox, "pytorch-gpu")
    assert gpu_limit(every) == 1
    assert any("gpus: all" in note and "--gpus N" in note for note in every.notes)
    picked = manifests(sandbox, "pytorch-gpu", Overrides(gpus="0,3"))
    assert gpu_limit(picked) == 2
    assert any("gpus: 0,3" in note and "cannot ask for particular GPUs" in note for note in picked.notes)
    assert gpu_limit(manifests(sandbox, "pytorch-gpu", Overrides(gpus="3"))) == 3
    none = manifests(sandbox, "pytorch-gpu", Overrides(gpus="none"))
    assert gpu_limit(none) is None
    # As with docker: an image's NVIDIA_VISIBLE_DEVICES=all must not hand out the node's GPUs.
    env = none.documents[0]["spec"]["containers"][0]["env"]
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in env


def test_a_claim_per_named_volume_and_no_bind_mounts(sandbox: Sandbox) -> None:
    sandbox.write(
        "work/box.yaml",
        "image: x\nvolumes:\n  - data:/data\n  - {source: models, target: /models, readonly: true}\n"
        "  - ./code:/code\n",
    )
    documents, text, stderr = render("box.yaml")
    claims = [d for d in documents if d["kind"] == "PersistentVolumeClaim"]
    assert [c["metadata"]["name"] for c in claims] == ["devbox-alice-data", "devbox-alice-models"]
    for claim in claims:
        assert claim["spec"] == {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}},
        }
        assert claim["metadata"]["labels"]["devbox.owner"] == "alice"
    pod = pod_of(documents)
    claimed = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]}
    assert sorted(claimed.values()) == ["devbox-alice-data", "devbox-alice-models"]
    mounts = {m["mountPath"]: m for m in container_of(documents)["volumeMounts"]}
    assert set(mounts) == {"/data", "/models"}  # /code was a bind: left out
    assert mounts["/models"]["readOnly"] is True
    assert claimed[mounts["/data"]["name"]] == "devbox-alice-data"
    assert f"bind mount {sandbox.cwd}/code -> /code left out" in text
    assert f"bind mount {sandbox.cwd}/code -> /code left out" in stderr


def test_the_pod_runs_as_the_caller_without_privilege_escalation(sandbox: Sandbox) -> None:
    sandbox.write("work/plain.yaml", "image: x\n")
    sandbox.write("work/numeric.yaml", "image: x\nuser: '1234:5678'\n")
    sandbox.write("work/named.yaml", "image: x\nuser: root\n")

    def security(name: str) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
        result = manifests(sandbox, name)
        pod_spec = result.documents[0]["spec"]
        return pod_spec["containers"][0]["securityContext"], pod_spec, result.notes

    caller, pod_spec, _ = security("plain.yaml")
    assert caller == {
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsNonRoot": True,
    }
    assert pod_spec["securityContext"] == {"fsGroup": 1000}  # a fresh claim is the user's to write
    assert pod_spec["automountServiceAccountToken"] is False
    numeric, pod_spec, _ = security("numeric.yaml")
    assert (numeric["runAsUser"], numeric["runAsGroup"], pod_spec["securityContext"]["fsGroup"]) == (
        1234,
        5678,
        5678,
    )
    root, _, notes = security("named.yaml")
    assert (root["runAsUser"], root["runAsNonRoot"]) == (1000, True)
    assert any(note.startswith("user root:") for note in notes)


def test_user_host_is_the_callers_numbers(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getuid", lambda: 4242)
    monkeypatch.setattr(os, "getgid", lambda: 4343)
    documents, _, _ = render("default")  # user: host
    security = container_of(documents)["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"], security["runAsNonRoot"]) == (4242, 4343, True)
    # sshd on port 22 as that user: Docker allows it, a pod needs the (safe) sysctl.
    pod_security = pod_of(documents)["spec"]["securityContext"]
    assert pod_security["sysctls"] == [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]
    assert container_of(documents)["resources"]["limits"] == {"memory": "4Gi"}


def test_command_env_file_and_fixed_ports(sandbox: Sandbox) -> None:
    sandbox.write(
        "work/web.yaml",
        "image: x\ncommand: python -m http.server 80\nenv_file: .env\nports: {web_ui: '8080:80'}\n"
        "resources: {cpus: 1.5, memory: 1536m, disk: 20g}\n",
    )
    sandbox.write("work/.env", "SECRET=x\n")
    result = manifests(sandbox, "web.yaml")
    for document in result.documents:
        validate(document)
        check_names(document)
    container = result.documents[0]["spec"]["containers"][0]
    # docker run's COMMAND replaces the image's CMD, not its ENTRYPOINT: Kubernetes' args.
    assert container["args"] == ["python", "-m", "http.server", "80"] and "command" not in container
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "web-ui"}]
    assert container["resources"]["limits"] == {
        "cpu": "1500m",
        "memory": "1536Mi",
        "ephemeral-storage": "20Gi",
    }
    [source] = container["envFrom"]
    secret = source["secretRef"]["name"]
    assert "SECRET" not in json.dumps(result.documents)  # values stay in the file
    assert any(f"kubectl create secret generic {secret} --from-env-file=" in n for n in result.notes)
    assert any("host port 8080" in n and "port-forward" in n for n in result.notes)


def test_names_and_labels_follow_kubernetes_rules(sandbox: Sandbox) -> None:
    odd = resolve.resolve("pytorch-gpu", sandbox.settings(DEVBOX_USER="Bob_"))
    result = k8s.manifests(odd.spec, odd.profile, 1000, 1000)
    for document in result.documents:
        validate(document)
        check_names(document)
    meta = result.documents[0]["metadata"]
    assert meta["labels"]["devbox.owner"] == "Bob"  # a label value ends alphanumeric
    assert meta["annotations"]["devbox.owner"] == "Bob_"  # verbatim where values are free
    assert meta["name"].startswith("devbox-bob-pytorch-gpu-") and meta["name"] != "devbox-bob-pytorch-gpu"
    assert k8s.dns_label("devbox-bob-x") == "devbox-bob-x"
    assert k8s.dns_label("Devbox_A") != k8s.dns_label("devbox-a")  # distinct names stay distinct
    assert len(k8s.dns_label("x" * 100)) <= 63 and k8s.is_dns_label(k8s.dns_label("x" * 100))
    assert k8s.label_value("-a:b" + "c" * 80 + "-") == "a-b" + "c" * 60
    assert k8s.is_qualified_name("devbox.owner") and k8s.is_qualified_name("app.kubernetes.io/name")
    assert not k8s.is_qualified_name("devbox owner") and not k8s.is_qualified_name("Bad_Prefix/x")
    assert (k8s.quantity(16 << 30), k8s.quantity(1536 << 20), k8s.quantity(1000)) == (
        "16Gi",
        "1536Mi",
        "1000",
    )


def test_the_validator_refuses_a_broken_manifest(sandbox: Sandbox) -> None:
    """The checks above can fail: Kubernetes' schema does refuse what is wrong."""
    pod = manifests(sandbox, "pytorch-gpu").documents[0]
    validate(pod)
    bad_port = json.loads(json.dumps(pod))
    bad_port["spec"]["containers"][0]["ports"][0]["containerPort"] = "8888x"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad_port)
    typo = json.loads(json.dumps(pod))
    typo["spec"]["containers"][0]["workdir"] = "/workspace"  # strict: no unknown fields
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(typo)
    no_image_list = json.loads(json.dumps(pod))
    no_image_list["spec"]["containers"] = {"name": "box"}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(no_image_list)


def test_json_is_a_kubernetes_list_and_plain_json_is_unchanged(sandbox: Sandbox) -> None:
    result = runner.invoke(app, ["render", "pytorch-gpu", "--format", "k8s", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    assert [item["kind"] for item in listed["items"]] == ["Pod", "PersistentVolumeClaim"]
    for item in listed["items"]:
        validate(item)
    spec = json.loads(runner.invoke(app, ["render", "pytorch-gpu", "--json"]).stdout)
    assert spec["container"] == "devbox-alice-pytorch-gpu"


def test_k8s_with_host_is_refused_naming_the_flag(sandbox: Sandbox) -> None:
    result = runner.invoke(app, ["render", "pytorch-gpu", "--format", "k8s", "--host", "gpu2"])
    assert result.exit_code == 2
    assert "--host" in result.stderr and "--format k8s" in result.stderr
    assert result.stdout == ""


def test_the_quota_in_the_scaling_guide_is_valid() -> None:
    guide = (REPO / "docs" / "scaling.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", guide, re.DOTALL)
    documents = [d for block in blocks for d in yaml.safe_load_all(block) if d]
    quotas = [d for d in documents if d.get("kind") == "ResourceQuota"]
    assert quotas and quotas[0]["spec"]["hard"]["requests.nvidia.com/gpu"]
    for document in documents:
        validate(document)


def test_k8s_does_not_measure_the_profile_against_this_machine(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A laptop with 2 CPUs renders the pod of a 4-CPU, 16g profile: the cluster's node runs it."""
    monkeypatch.setattr(capacity, "local", lambda: capacity.Capacity(cpus=2, memory=4 << 30))
    documents, _, _ = render("pytorch-gpu")
    assert container_of(documents)["resources"]["limits"]["cpu"] == "4"
