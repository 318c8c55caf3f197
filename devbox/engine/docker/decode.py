"""Docker's container JSON (summaries and inspect output) → devbox's Box (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from devbox.box import labels
from devbox.box.state import Box, BoxConfig, MountInfo, Published, gpus_from_label, port_names_from_label


def created_ns(text: str) -> int:
    """Docker's RFC 3339 timestamp with nanoseconds as integer nanoseconds (exact ordering)."""
    head, _, frac = text.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp())
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def _timestamp(text: str | None) -> float | None:
    if not text or text.startswith("0001-"):
        return None
    # Docker prints nanoseconds; fromisoformat takes at most microseconds.
    head, _, frac = text.rstrip("Z").partition(".")
    frac = (frac + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{frac}").replace(tzinfo=UTC).timestamp()


def _mounts(items: list[dict[str, Any]] | None, lab: dict[str, str]) -> tuple[MountInfo, ...]:
    # Summaries and inspect output describe mounts the same way; a lab box's pins as the caller's paths.
    shown = labels.pinned_sources(lab)
    return tuple(
        MountInfo(
            m.get("Type", ""),
            shown.get(source, source),
            m["Destination"],
            not m.get("RW", True),
        )
        for m in items or []
        for source in [m.get("Name") or m.get("Source", "")]
    )


def _from_labels(lab: dict[str, str]) -> dict[str, Any]:
    # What both engine views give the same way: everything devbox keeps in labels.
    return {
        "name": lab.get(labels.BOX, ""),
        "owner": lab.get(labels.OWNER, ""),
        "profile": lab.get(labels.PROFILE, ""),
        "spec_hash": lab.get(labels.SPEC_HASH, ""),
        "gpus": gpus_from_label(lab.get(labels.GPUS, "")),
        "labels": dict(lab),
    }


def from_summary(item: dict[str, Any]) -> Box:
    """A box from one entry of `GET /containers/json` (what `docker ps` reads)."""
    lab = item.get("Labels") or {}
    names = port_names_from_label(lab.get(labels.PORTS, ""))
    published: dict[int, Published] = {}
    for port in item.get("Ports") or []:
        private = int(port["PrivatePort"])
        if private in names and (private not in published or port.get("IP") not in ("::", "")):
            host = port.get("PublicPort")
            published[private] = Published(
                names[private], private, int(host) if host else None, port.get("IP")
            )
    for private, name in names.items():
        published.setdefault(private, Published(name, private, None, None))
    return Box(
        id=item["Id"],
        container=(item.get("Names") or ["/?"])[0].lstrip("/"),
        image=item.get("Image", ""),
        status=item.get("State", ""),
        status_text=item.get("Status", ""),
        created=float(item.get("Created", 0)),
        ports=tuple(published[p] for p in sorted(published, key=list(names).index)),
        mounts=_mounts(item.get("Mounts"), lab),
        **_from_labels(lab),
    )


def _bind(text: str, shown: dict[str, str]) -> MountInfo:
    # HostConfig.Binds holds what devbox asked for: "source:target:rw" (or ":ro").
    source, _, rest = text.partition(":")
    target, _, mode = rest.partition(":")
    kind = "bind" if source.startswith("/") else "volume"
    return MountInfo(kind, shown.get(source, source), target, "ro" in mode.split(","))


def _config(config: dict[str, Any], host_config: dict[str, Any]) -> BoxConfig:
    """How the container was created: what drift compares and exec takes its user from."""
    shown = labels.pinned_sources(config.get("Labels") or {})
    fixed: dict[int, int | None] = {}
    for key, bindings in (host_config.get("PortBindings") or {}).items():
        port = (bindings or [{}])[0].get("HostPort") or ""
        fixed[int(key.split("/")[0])] = int(port) if port.isdecimal() and int(port) else None
    return BoxConfig(
        env=dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e),
        user=config.get("User") or "",
        workdir=config.get("WorkingDir") or "",
        command=tuple(config.get("Cmd") or ()),
        binds=tuple(_bind(b, shown) for b in host_config.get("Binds") or []),
        host_ports=fixed,
    )


def from_inspect(info: dict[str, Any]) -> Box:
    """A box from `GET /containers/{id}/json` (what `docker inspect` reads)."""
    config, state, host_config = (
        info.get("Config") or {},
        info.get("State") or {},
        info.get("HostConfig") or {},
    )
    lab = config.get("Labels") or {}
    names = port_names_from_label(lab.get(labels.PORTS, ""))
    bound = (info.get("NetworkSettings") or {}).get("Ports") or {}
    ports = []
    for private, name in names.items():
        bindings = bound.get(f"{private}/tcp") or []
        # Prefer the IPv4 binding when the engine reports both families.
        binding = next(
            (b for b in bindings if ":" not in b.get("HostIp", "")), bindings[0] if bindings else None
        )
        host = int(binding["HostPort"]) if binding and binding.get("HostPort") else None
        ports.append(Published(name, private, host, binding.get("HostIp") if binding else None))
    return Box(
        id=info["Id"],
        container=info.get("Name", "").lstrip("/"),
        image=config.get("Image", ""),
        status=state.get("Status", ""),
        status_text=state.get("Status", ""),
        created=_timestamp(info.get("Created")) or 0.0,
        ports=tuple(ports),
        mounts=_mounts(info.get("Mounts"), lab),
        started_at=_timestamp(state.get("StartedAt")),
        exit_code=state.get("ExitCode"),
        **_from_labels(lab),
        shm_size=host_config.get("ShmSize") or None,
        memory=host_config.get("Memory") or None,
        nano_cpus=host_config.get("NanoCpus") or None,
        pids_limit=host_config.get("PidsLimit") or None,
        tty=bool(config.get("Tty")),
        config=_config(config, host_config),
    )
