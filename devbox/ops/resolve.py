"""Every check `up` applies before touching the engine: profile, flags, policy, then the container spec."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from devbox import caller
from devbox.box import spec
from devbox.box.resolved import Resolved
from devbox.errors import InvalidInput
from devbox.policy import capacity, enforce, lab, rules
from devbox.profile import buildcontext, flags, loader
from devbox.settings import Settings

ImageProbe = Callable[[str], "dict[str, str] | None"]


def resolve(
    ref: str,
    settings: Settings,
    overrides: flags.Overrides | None = None,
    probe: ImageProbe | None = None,
    flags_cwd: Path | None = None,
) -> Resolved:
    """Every check `up` applies before touching the engine: load, validate, policy, spec.

    `probe` returns a local image's labels (None if unknown): a devbox image gets its user
    in the environment instead of `--user`. In lab mode the policy is read as root and the
    profile (its files, env files, flags' files) with the caller's rights. `flags_cwd`: where
    the command was typed, when `settings.cwd` is a box's recorded project folder: a flag's
    `./data` is the shell's.
    """
    policy = rules.load(settings)
    defaults = [policy.defaults] if policy.defaults else []
    with caller.rights(settings.caller):
        typed = replace(settings, cwd=flags_cwd) if flags_cwd is not None else settings
        layers, problems = flags.to_layers(overrides or flags.Overrides(), typed)
        if problems:
            # Say the profile's own problems too, so one run shows everything to fix.
            message = "invalid flags"
            try:
                loader.load(ref, settings, defaults=defaults)
            except InvalidInput as exc:
                problems = [*problems, *exc.problems]
                message = f"invalid flags, and {exc.message}"
            raise InvalidInput(message, problems, hint="see devbox COMMAND --help")
        profile = loader.load(ref, settings, defaults=defaults, overrides=layers)
    profile = lab.check(profile, policy, settings)
    profile = enforce.check(profile, policy)
    if profile.build is not None:
        # The image tag hashes what the build would send (once the policy allows a build),
        # read as the caller reads it.
        build = profile.build
        cache = buildcontext.cache_file(settings.user_config_dir / "cache", build.context)
        with caller.rights(settings.caller):
            inputs = buildcontext.scan(build.context, build.dockerfile, cache)
        profile = replace(profile, build=replace(build, inputs=inputs.digest, files=inputs.files))
    ctx = spec.HostContext(
        settings.owner,
        settings.uid,
        settings.gid,
        policy.bind_address,
        settings.login,
        lab=settings.lab,
        # A box made inside a Slurm job goes with it (docs/slurm.md): the Epilog finds it by label.
        slurm_job=settings.caller_environ.get("SLURM_JOB_ID", "").strip(),
    )
    resolved = Resolved(profile, policy, spec.build(profile, ctx), ctx, settings)
    if probe is None:
        return resolved
    return resolved.for_image(probe(resolved.spec.image))


def check_capacity(resolved: Resolved, engine_host: str) -> None:
    """A quota this host cannot give (cpus above its CPUs, memory above its RAM) is a located
    profile error before create, not Docker's refusal. Only for an engine on this machine's
    socket (`engine_host` unix://): a remote engine's host has other CPUs and memory."""
    if not engine_host.startswith("unix://"):
        return
    problems = capacity.quota_problems(resolved.profile, capacity.local())
    if problems:
        message = f"profile '{resolved.profile.name}' asks for more than this host has"
        raise InvalidInput(message, problems, hint="devbox help profiles")
