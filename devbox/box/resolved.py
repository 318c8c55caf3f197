"""A profile resolved against the lab policy, and the container spec it implies (pure data)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from devbox.box import labels, spec
from devbox.box.spec import ContainerSpec, HostContext
from devbox.policy import lab
from devbox.policy.rules import Policy
from devbox.profile.model import Profile
from devbox.settings import Settings


@dataclass(frozen=True)
class Resolved:
    """A profile resolved against the policy, and the container spec it implies."""

    profile: Profile
    policy: Policy
    spec: ContainerSpec
    context: HostContext
    settings: Settings

    def for_image(self, image_labels: dict[str, str] | None) -> Resolved:
        """The same, with the spec adapted to what the image turned out to be.

        A devbox-protocol image starts as root and drops to the user itself; in lab mode it
        starts as the user too (`--user`), unless the policy allows root (`lab.may_start_as_root`).
        """
        protocol = labels.PROTOCOL in (image_labels or {})
        as_caller = protocol and self.settings.lab and not lab.may_start_as_root(self.profile, self.policy)
        if protocol == self.spec.protocol and (self.spec.user is not None) == as_caller:
            return self
        return replace(self, spec=spec.build(self.profile, self.context, protocol, as_caller))
