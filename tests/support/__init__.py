"""Helpers shared by enva.pve's unit, integration and benchmark code (tests/ is on pytest's pythonpath)."""
