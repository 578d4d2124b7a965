"""Hypothesis profiles for the protocol suite.

``ci`` (the default) keeps the property tests to a few seconds; ``fuzz`` runs
100 000 examples per property for a long hostile-input session (minutes per
property, so lift pytest-timeout's 300 s limit)::

    HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest tests/protocol -k property --timeout=0

The profile is loaded when this directory's tests are collected, and
hypothesis settings are process-wide.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, print_blob=True)
settings.register_profile(
    "fuzz",
    max_examples=100_000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
