"""Fixtures of the integration tests: the PVE API lab server over a fake lab tree, and ports that misbehave."""

from support.pve_lab import closed_port, lab, pve_lab, silent_port  # noqa: F401  pylint: disable=unused-import
