"""The deterministic simulation of the engine under faults (see :mod:`.harness`)."""

from .harness import PROFILES, Profile, Report, World, simulate

__all__ = ["PROFILES", "Profile", "Report", "World", "simulate"]
