"""Every fuzz target of ``benchmarks/fuzz.py``, at regression size (a few hundred examples).

The seed is random, as in the rest of the hypothesis suite, and a failure names
it: ``benchmarks/fuzz.py --targets NAME --seed SEED --examples 500`` replays it.
"""

from __future__ import annotations

import random

import pytest

from tests.fuzz.targets import TARGETS, Source, run_target

EXAMPLES = 500


@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz_target(name: str) -> None:
    seed = random.randrange(2**32)
    outcome = run_target(TARGETS[name], examples=EXAMPLES, seed=seed, reduce_seconds=5.0)
    assert outcome.failure is None, f"seed {seed}: {outcome.failure}"
    assert outcome.examples == EXAMPLES


@pytest.mark.parametrize("name", list(TARGETS))
def test_zero_bytes_give_the_simplest_input(name: str) -> None:
    # What shrinking converges to must itself be a valid, checkable input.
    target = TARGETS[name]
    target.check(target.generate(Source(b"")))
