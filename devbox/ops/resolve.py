"""Every check `up` applies before touching the engine: profile, flags, policy, then the container spec."""

from __future__ import annotations

from collections.abc import Callable

from devbox import caller
from devbox.box import spec
from devbox.box.resolved import Resolved
from devbox.errors import InvalidInput
from devbox.policy import enforce, lab, rules
from devbox.profile import flags, loader
from devbox.settings import Settings

ImageProbe = Callable[[str], "dict[str, str] | None"]


def resolve(
    ref: str, settings: Settings, overrides: flags.Overrides | None = None, probe: ImageProbe | None = None
) -> Resolved:
    """Every check `up` applies before touching the engine: load, validate, policy, spec.

    `probe` returns a local image's labels (None if unknown): a devbox image gets its user
    in the environment instead of `--user`. In lab mode the policy is read as root and the
    profile (its files, env files, flags' files) with the caller's rights.
    """
    policy = rules.load(settings)
    defaults = [policy.defaults] if policy.defaults else []
    with caller.rights(settings.caller):
        layers, problems = flags.to_layers(overrides or flags.Overrides(), settings)
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
    ctx = spec.HostContext(
        settings.owner, settings.uid, settings.gid, policy.bind_address, settings.login, lab=settings.lab
    )
    resolved = Resolved(profile, policy, spec.build(profile, ctx), ctx, settings)
    if probe is None:
        return resolved
    return resolved.for_image(probe(resolved.spec.image))
