"""Wiring of the core, backends and workers into engines."""
