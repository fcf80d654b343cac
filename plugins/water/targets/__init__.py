"""Targets: where a pipeline's stages run. Chosen once, at parse time, by WATER_TARGET."""

from __future__ import annotations

import os

from water.targets.base import Target

__all__ = ["DEFAULT_TARGET", "TARGETS", "Target", "get_target", "target_name"]

DEFAULT_TARGET = "local"
TARGETS = ("local", "cloud")


def target_name() -> str:
    return os.environ.get("WATER_TARGET", DEFAULT_TARGET).strip().lower()


def get_target(name: str | None = None) -> Target:
    name = name or target_name()
    if name == "local":
        from water.targets.local.target import LocalTarget

        return LocalTarget.from_environment()
    if name == "cloud":
        from water.targets.cloud.target import CloudTarget

        return CloudTarget.from_environment()
    raise ValueError(f"WATER_TARGET={name!r} is not a target water knows; choose one of {', '.join(TARGETS)}")
