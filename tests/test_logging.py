"""mppagent's loggers import structlog only for an event that passes its level.

Run in a fresh interpreter: the test process has long imported structlog.
"""

from __future__ import annotations

import subprocess
import sys

from tests.cli.helpers import ROOT

PROBE = """
import io, sys
import mppagent.logging as mpp_logging
log = mpp_logging.get_logger("mppagent.probe")
buffer = io.StringIO()
mpp_logging.configure(level="WARNING", json={json}, stream=buffer)
log.debug("quiet.debug", detail=1)
log.info("quiet.info")
print("after-quiet", "structlog" in sys.modules)
log.warning("loud.warning", private_key="0x" + "11" * 32, note="kept")
print("after-loud", "structlog" in sys.modules)
print("OUTPUT" + buffer.getvalue().replace("\\n", " | "))
"""


def _run(json: bool) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(json=json)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def test_events_below_the_level_import_nothing_and_the_first_loud_one_is_configured() -> None:
    for json in (False, True):
        quiet, loud, output = _run(json)
        assert quiet == "after-quiet False"
        assert loud == "after-loud True"
        assert "loud.warning" in output
        assert "kept" in output
        assert "quiet" not in output
        assert "11" * 32 not in output  # configure's redacting processors were applied
        assert output.removeprefix("OUTPUT").lstrip().startswith("{") is json
