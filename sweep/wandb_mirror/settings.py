"""The experiment's ``wandb:`` section: strict settings and how the mode is resolved."""
from __future__ import annotations

import netrc
import os
from dataclasses import dataclass
from urllib.parse import urlparse

from training.settings import build, require, setting

MODES = ("auto", "online", "offline", "disabled")
DEFAULT_PROJECT = "crack-sweep"


@dataclass
class WandbSettings:
    enabled: bool = setting(True, "Mirror the sweep to W&B; false turns it off (so does "
                                  "WANDB_MODE=disabled)")
    # auto: online when an API key is configured (and WANDB_MODE does not say otherwise),
    # else offline; runs written offline are uploaded later with `make wandb-sync`.
    mode: str = setting("auto", "auto (online with an API key, else offline), online, offline "
                                "or disabled; WANDB_MODE=offline forces offline")
    project: str = setting("", "W&B project; '' = $WANDB_PROJECT, else crack-sweep")
    entity: str = setting("", "W&B entity; '' = $WANDB_ENTITY, else the key's default entity")
    image_epochs: list[int] = setting([1, -1], "Epochs at which trials log validation panels; "
                                               "-1 = a trial's last epoch")
    image_count: int = setting(4, "Validation images per panel (0 to 16); 0 = no images")
    artifacts: bool = setting(True, "Log the data set and the best model as artifacts")
    drain_timeout_s: float = setting(120.0, "How long the end of a sweep waits for the mirror "
                                            "to finish writing, in seconds")

    @classmethod
    def from_dict(cls, values: dict | None, source: str = "wandb") -> WandbSettings:
        settings = build(cls, values or {}, source, prefix="wandb.")
        settings.validate(source)
        return settings

    def validate(self, source: str) -> None:
        require(self.mode in MODES, source, "wandb.mode", self.mode, " | ".join(MODES))
        for i, epoch in enumerate(self.image_epochs):
            require(epoch >= 1 or epoch == -1, source, f"wandb.image_epochs[{i}]", epoch,
                    "an epoch (1 or more) or -1 for the last")
        require(0 <= self.image_count <= 16, source, "wandb.image_count", self.image_count,
                "between 0 and 16")
        require(0 < self.drain_timeout_s <= 86400, source, "wandb.drain_timeout_s",
                self.drain_timeout_s, "a positive number of seconds, up to 86400")

    def resolved_project(self) -> str:
        return self.project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT

    def resolved_entity(self) -> str | None:
        return self.entity or os.environ.get("WANDB_ENTITY") or None


def resolve_mode(settings: WandbSettings, environ=os.environ) -> str:
    """online, offline or disabled: what the mirror will actually do."""
    env_mode = environ.get("WANDB_MODE", "").lower()
    if not settings.enabled or settings.mode == "disabled" or env_mode == "disabled":
        return "disabled"
    if settings.mode == "offline" or env_mode in ("offline", "dryrun"):
        return "offline"
    if settings.mode == "online" or has_api_key(environ):
        # An explicit `online` without a key in sight still tries (wandb may have its own
        # settings); if that fails the writer says so once and writes offline runs instead.
        return "online"
    return "offline"


def has_api_key(environ=os.environ) -> bool:
    """A key in the environment or in ~/.netrc for the W&B host (never read out here)."""
    if environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        path = os.path.join(environ.get("HOME", os.path.expanduser("~")), ".netrc")
        return netrc.netrc(path).authenticators(host or "") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False

