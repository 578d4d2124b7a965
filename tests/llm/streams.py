"""Reference-server SSE bodies for the meter tests, built with the server's own writer."""

from __future__ import annotations

from mppagent.devserver.fakemodel import FakeModel
from mppagent.devserver.wire import MODELS, PLAIN, ChunkWriter, Usage, sse


def reference_body(model: str, tokens: int, *, include_usage: bool = True) -> bytes:
    """The bytes the reference server streams for ``tokens`` tokens of ``model``."""
    flavour = MODELS.get(model, PLAIN)
    writer = ChunkWriter("c1", model, 0, flavour, include_usage=include_usage)
    generated = list(
        FakeModel().generate(
            "hello", max_tokens=tokens, reasoning_tokens=flavour.reasoning_tokens(tokens)
        )
    )
    raw = sse(writer.role_chunk()) + b"".join(sse(writer.token_chunk(t)) for t in generated)
    for final in writer.final_chunks("length", Usage.of(5, generated)):
        raw += sse(final)
    return raw + b"data: [DONE]\n\n"
