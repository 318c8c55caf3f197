"""The verbs: each takes settings and plain arguments, returns a result dataclass, prints nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from devbox import flags, labels, policy, profiles, spec
from devbox.errors import DevboxError, InvalidInput, Problem
from devbox.model import Profile
from devbox.settings import Settings
from devbox.spec import ContainerSpec, HostContext


@dataclass(frozen=True)
class Resolved:
    """A profile resolved against the policy, and the container spec it implies."""

    profile: Profile
    policy: policy.Policy
    spec: ContainerSpec
    context: HostContext
    settings: Settings

    def for_image(self, image_labels: dict[str, str] | None) -> Resolved:
        """The same, with the spec adapted to what the image turned out to be."""
        protocol = labels.PROTOCOL in (image_labels or {})
        if protocol == self.spec.protocol:
            return self
        return replace(self, spec=spec.build(self.profile, self.context, protocol))


ImageProbe = Callable[[str], "dict[str, str] | None"]


def resolve(
    ref: str, settings: Settings, overrides: flags.Overrides | None = None, probe: ImageProbe | None = None
) -> Resolved:
    """Every check `up` applies before touching the engine: load, validate, policy, spec.

    `probe` returns a local image's labels (None if unknown): a devbox image gets its user
    in the environment instead of `--user`.
    """
    lab = policy.load(settings)
    layers, problems = flags.to_layers(overrides or flags.Overrides(), settings)
    defaults = [lab.defaults] if lab.defaults else []
    if problems:
        # Say the profile's own problems too, so one run shows everything to fix.
        message = "invalid flags"
        try:
            profiles.load(ref, settings, defaults=defaults)
        except InvalidInput as exc:
            problems = [*problems, *exc.problems]
            message = f"invalid flags, and {exc.message}"
        raise InvalidInput(message, problems, hint="see devbox COMMAND --help")
    profile = profiles.load(ref, settings, defaults=defaults, overrides=layers)
    profile = policy.check(profile, lab)
    ctx = spec.HostContext(settings.owner, settings.uid, settings.gid, lab.bind_address, settings.login)
    resolved = Resolved(profile, lab, spec.build(profile, ctx), ctx, settings)
    if probe is None:
        return resolved
    return resolved.for_image(probe(resolved.spec.image))


@dataclass(frozen=True)
class ProfileStatus:
    """A profile file and whether it loads cleanly (under the policy in force)."""

    name: str
    path: str
    scope: str
    valid: bool
    shadowed_by: str | None = None
    problems: list[Problem] = field(default_factory=list)
    message: str = ""


def _status(ref: profiles.ProfileRef, settings: Settings, shadowed_by: str | None) -> ProfileStatus:
    try:
        resolve(str(ref.path), settings)
    except DevboxError as exc:
        problems = getattr(exc, "problems", [])
        return ProfileStatus(ref.name, str(ref.path), ref.scope, False, shadowed_by, problems, exc.message)
    return ProfileStatus(ref.name, str(ref.path), ref.scope, True, shadowed_by)


def list_profiles(settings: Settings) -> list[ProfileStatus]:
    """Every profile devbox can find, in lookup order; later ones of a name are shadowed."""
    winners: dict[str, str] = {}
    result = []
    for ref in profiles.discover(settings):
        shadowed_by = winners.get(ref.name)
        winners.setdefault(ref.name, str(ref.path))
        result.append(_status(ref, settings, shadowed_by))
    return result


def check_profiles(paths: list[Path], settings: Settings) -> list[ProfileStatus]:
    """Validate profile files (and the policy they must satisfy), as an admin's CI would."""
    result = []
    for path in paths:
        absolute = path if path.is_absolute() else settings.cwd / path
        if not absolute.is_file():
            result.append(ProfileStatus(path.name, str(path), "path", False, message=f"no file {path}"))
            continue
        ref = profiles.ProfileRef(absolute.stem, absolute.resolve(), "path")
        result.append(_status(ref, settings, None))
    return result
