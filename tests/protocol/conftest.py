"""Hypothesis profiles for the protocol suite.

``ci`` (the default) keeps the property tests to a few seconds; ``fuzz`` runs
100 000 examples per property for a long hostile-input session::

    HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest tests/protocol -k property
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
