"""Worlds with planted truth: a synthetic legal corpus, models trained on it deterministically, and
the acceptance checks of the metrics against what was planted (``acceptance``).

Imports ``game``, ``audit`` and ``metrics``; the runtime imports it only to build the embedded default
model. ``names`` is torch-free for the command line. Map: docs/contracts.md; results: docs/testbed.md.
"""
