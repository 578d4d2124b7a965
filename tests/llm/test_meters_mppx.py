"""The ``event`` meter counts exactly what the reference SDK (``mppx``) bills.

``mppx``'s SSE transport re-reads an upstream stream with its own ``iterateData``
(skipping ``[DONE]``) and charges one tick per value it yields. This test feeds the
same bytes -- real reference-server streams of every flavour, named events, comments,
multi-line data -- to that very function from the installed npm package and to the
meter, and requires the same count.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mppagent.devserver.wire import MODELS
from mppagent.llm.meters import MeterSpec, make_meter
from mppagent.transport.sse import SSEParser

from .streams import reference_body

ROOT = Path(__file__).resolve().parents[2]
SSE_JS = ROOT / "node_modules/mppx/dist/tempo/session/server/Sse.js"

# Reads every file named on the command line and prints how many values mppx's
# iterateData yields for it, as its SSE transport does for an upstream response.
COUNTER = """
import { readFileSync } from 'node:fs';
const { iterateData } = await import(process.argv[2]);
const counts = [];
for (const file of process.argv.slice(3)) {
  const body = new Response(readFileSync(file));
  let n = 0;
  for await (const _ of iterateData(body, { skip: (d) => d === '[DONE]' })) n += 1;
  counts.push(n);
}
console.log(JSON.stringify(counts));
"""


ODD = (
    b": keep-alive comment\n\n"
    b"event: content_block_delta\ndata: " + json.dumps({"type": "delta"}).encode() + b"\n\n"
    b"data: line one\ndata: line two\n\n"
    b"id: 7\n\n"  # no data: not a value
    b'data: {"choices":[]}\n\n'
    b"data: [DONE]\n\n"
)


@pytest.mark.skipif(not SSE_JS.exists() or shutil.which("node") is None, reason="needs mppx")
def test_event_meter_matches_mppx_iterate_data(tmp_path: Path) -> None:
    bodies = {f"{i}.sse": reference_body(model, 25) for i, model in enumerate(sorted(MODELS))}
    bodies["odd.sse"] = ODD
    files = []
    for name, body in bodies.items():
        path = tmp_path / name
        path.write_bytes(body)
        files.append(str(path))
    script = tmp_path / "count.mjs"
    script.write_text(COUNTER)
    done = subprocess.run(
        ["node", str(script), SSE_JS.as_uri(), *files],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    billed_by_mppx = json.loads(done.stdout)
    ours = []
    for body in bodies.values():
        meter = make_meter(MeterSpec(kind="event", request_units=0), "llm_token", b"")
        for event in SSEParser().feed(body):
            meter.observe(event)
        ours.append(meter.bound)
    assert ours == billed_by_mppx
    assert billed_by_mppx[-1] == 3  # named event, multi-line data, usage-only chunk
    assert min(billed_by_mppx[:-1]) >= 25 + 2  # role + 25 tokens + finish (+ usage chunk)
