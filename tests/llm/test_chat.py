"""Chat requests and delta parsing, against the devserver's own wire code."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from mppagent.devserver.fakemodel import FakeModel
from mppagent.devserver.wire import (
    MODELS,
    SSE_DONE,
    ChunkWriter,
    Usage,
    completion_body,
    parse_chat_request,
    sse,
)
from mppagent.errors import ConfigError
from mppagent.llm import (
    BUILTIN_PROFILES,
    ChatDelta,
    ProviderError,
    build_chat_request,
    parse_chunk,
    parse_completion,
    parse_param,
    parse_params,
)

PROMPT = "Describe this picture."


def png_bytes() -> bytes:
    """A real 1x1 RGB PNG."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 16


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# --------------------------------------------------------------------------- requests


def test_text_only_request_with_profile_defaults_and_usage() -> None:
    body = build_chat_request(prompt="Hi", system="Be brief.", profile=BUILTIN_PROFILES["local"])
    assert body == {
        "model": "mpp-fake-1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    parse_chat_request(body)  # the devserver (OpenAI's rules) accepts it


def test_params_override_profile_defaults_key_by_key() -> None:
    router = BUILTIN_PROFILES["mpp-router"]
    body = build_chat_request(
        prompt="Hi",
        profile=router,
        params={"timeout_ms": 5000, "allow_external": False},
        max_tokens=7,
    )
    assert body == {
        "model": "auto",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 7,
        "routing_strategy": "cheapest",
        "timeout_ms": 5000,
        "allow_external": False,
    }


def test_non_streaming_request_never_carries_stream_options() -> None:
    body = build_chat_request(prompt="Hi", profile=BUILTIN_PROFILES["local"], stream=False)
    assert body["stream"] is False
    assert "stream_options" not in body
    assert build_chat_request(model="m", prompt="x")["stream"] is True  # no profile: stream


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"params": {"model": "x"}}, r"--param cannot set model"),
        ({"params": {"stream": False}}, r"--param cannot set stream"),
        ({"params": {"max_tokens": 3}, "max_tokens": 4}, r"given both as an option and"),
        ({"max_tokens": 0}, r"max_tokens must be at least 1"),
    ],
)
def test_request_conflicts_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_chat_request(model="m", prompt="x", **kwargs)
    with pytest.raises(ConfigError, match="no model given"):
        build_chat_request(prompt="x")


def test_local_png_and_jpeg_become_data_urls_by_content(tmp_path: Path) -> None:
    png = tmp_path / "pixel.png"
    png.write_bytes(png_bytes())
    jpeg = tmp_path / "photo.jpeg"
    jpeg.write_bytes(JPEG)
    disguised = tmp_path / "actually-png.jpg"  # the content decides, not the name
    disguised.write_bytes(png_bytes())
    body = build_chat_request(
        model="perceptron-mk1",
        prompt=PROMPT,
        images=[png, str(jpeg), disguised, "https://example.test/cat.webp"],
        stream=False,
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": PROMPT},
                {"type": "image_url", "image_url": {"url": data_url("image/png", png_bytes())}},
                {"type": "image_url", "image_url": {"url": data_url("image/jpeg", JPEG)}},
                {"type": "image_url", "image_url": {"url": data_url("image/png", png_bytes())}},
                {"type": "image_url", "image_url": {"url": "https://example.test/cat.webp"}},
            ],
        }
    ]
    assert parse_chat_request(body).prompt_tokens() > 0


def test_videos_are_urls_or_small_local_files(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(MP4)
    body = build_chat_request(
        model="m", prompt="", videos=["https://example.test/v.mp4", clip], stream=False
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "video_url", "video_url": {"url": "https://example.test/v.mp4"}},
                {"type": "video_url", "video_url": {"url": data_url("video/mp4", MP4)}},
            ],
        }
    ]
    small = BUILTIN_PROFILES["local"].model_copy(update={"max_video_bytes": len(MP4) - 1})
    with pytest.raises(ConfigError, match=r"video .*clip.mp4 is 40 bytes, over the limit of 39"):
        build_chat_request(prompt="x", videos=[clip], profile=small)


def test_oversized_image_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = tmp_path / "small.png"
    small.write_bytes(png_bytes())
    big = tmp_path / "huge.png"
    with big.open("wb") as handle:
        handle.write(png_bytes())
        handle.truncate(3 * 1024**3)  # 3 GiB, sparse: reading it would be the bug
    opened: list[Path] = []
    real_open = Path.open

    def spy(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(self)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", spy)
    with pytest.raises(
        ConfigError, match=r"image .*huge.png is 3221225472 bytes, over the limit of 20971520"
    ):
        build_chat_request(prompt="x", images=[big], profile=BUILTIN_PROFILES["openrouter"])
    assert opened == []
    tight = BUILTIN_PROFILES["local"].model_copy(update={"max_image_bytes": 10})
    with pytest.raises(ConfigError, match=r"over the limit of 10 \(max_image_bytes\)"):
        build_chat_request(prompt="x", images=[small], profile=tight)
    assert opened == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.png", b"just some text", r"named like image/png, but its content is not"),
        ("notes.txt", b"just some text", r"is not an image \(unrecognised content\)"),
        ("clip.png", MP4, r"is video/mp4, not an image"),
    ],
)
def test_files_that_are_not_images_are_refused(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        build_chat_request(model="m", prompt="x", images=[path])


def test_missing_files_directories_and_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"image file not found: .*nope.png"):
        build_chat_request(model="m", prompt="x", images=[tmp_path / "nope.png"])
    with pytest.raises(ConfigError, match=r"is not a regular file"):
        build_chat_request(model="m", prompt="x", images=[tmp_path])
    with pytest.raises(ConfigError, match=r"unsupported image URL scheme 'ftp'"):
        build_chat_request(model="m", prompt="x", images=["ftp://example.test/a.png"])
    with pytest.raises(ConfigError, match=r"data: URL given as image is not of type image"):
        build_chat_request(model="m", prompt="x", images=["data:text/plain;base64,aGk="])
    ok = build_chat_request(model="m", prompt="x", images="data:image/png;base64,AAAA")
    assert ok["messages"][0]["content"][1] == {  # type: ignore[index,call-overload]
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }


def test_parse_param_json_or_bare_string() -> None:
    assert parse_param("allow_external=true") == ("allow_external", True)
    assert parse_param("timeout_ms=5000") == ("timeout_ms", 5000)
    assert parse_param('plugins=[{"id": "web"}]') == ("plugins", [{"id": "web"}])
    assert parse_param("routing_strategy=cheapest") == ("routing_strategy", "cheapest")
    assert parse_param("stop=a=b") == ("stop", "a=b")
    assert parse_param("x=NaN") == ("x", "NaN")
    assert parse_param("x=") == ("x", "")
    assert parse_param('x="quoted"') == ("x", "quoted")
    assert parse_params(["a=1", "b=two", "a=3"]) == {"a": 3, "b": "two"}
    for bad in ("novalue", "=1", "a key=1"):
        with pytest.raises(ConfigError, match="--param"):
            parse_param(bad)


# -------------------------------------------------------------------------- responses


def stream_chunks(model: str, *, include_usage: bool) -> tuple[list[str], Any, Usage]:
    """The ``data:`` payloads the devserver streams for ``model``, and the expected answer."""
    flavour = MODELS[model]
    plan_max, reasoning = 24, flavour.reasoning_tokens(24)
    tokens = list(FakeModel(0).generate(PROMPT, max_tokens=plan_max, reasoning_tokens=reasoning))
    usage = Usage.of(11, tokens)
    writer = ChunkWriter("chatcmpl-1", model, 1, flavour, include_usage=include_usage)
    dicts = [writer.role_chunk(), *map(writer.token_chunk, tokens)]
    dicts += writer.final_chunks("length", usage)
    raw = b"".join(map(sse, dicts)) + SSE_DONE
    payloads = [block.removeprefix(b"data: ").decode() for block in raw.split(b"\n\n") if block]
    return payloads, tokens, usage


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_parse_chunk_reads_every_flavour(model: str, include_usage: bool) -> None:
    payloads, tokens, usage = stream_chunks(model, include_usage=include_usage)
    assert payloads[-1] == "[DONE]"
    deltas = [parse_chunk(p) for p in payloads]
    assert deltas[-1] is None
    got = [d for d in deltas if d is not None]
    assert "".join(d.content for d in got) == "".join(t.text for t in tokens if t.kind == "content")
    assert "".join(d.reasoning for d in got) == "".join(
        t.text for t in tokens if t.kind == "reasoning"
    )
    assert [d.finish_reason for d in got if d.finish_reason] == ["length"]
    usages = [d.usage for d in got if d.usage is not None]
    sends_usage = include_usage or MODELS[model].usage == "always"
    assert usages == ([usage.as_dict()] if sends_usage else [])
    assert all(d.error is None for d in got)
    # One delta per token that carries text: what a metering display counts.
    assert sum(1 for d in got if d.content or d.reasoning) == len(tokens)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_parse_completion_reads_every_flavour(model: str) -> None:
    flavour = MODELS[model]
    reasoning = flavour.reasoning_tokens(20)
    tokens = list(FakeModel(0).generate(PROMPT, max_tokens=20, reasoning_tokens=reasoning))
    usage = Usage.of(9, tokens)
    body = completion_body("c", model, 1, tokens, "stop", usage, flavour, {"k": 1})
    expected = ChatDelta(
        content="".join(t.text for t in tokens if t.kind == "content"),
        reasoning="".join(t.text for t in tokens if t.kind == "reasoning"),
        finish_reason="stop",
        usage=usage.as_dict(),
    )
    assert parse_completion(body) == expected
    assert parse_completion(json.dumps(body).encode()) == expected


def test_parse_chunk_tolerates_what_providers_send() -> None:
    assert parse_chunk("") is None
    assert parse_chunk(" [DONE] ") is None
    details_only = {
        "choices": [
            {
                "delta": {
                    "reasoning_details": [
                        {"type": "reasoning.summary", "summary": "Plan: "},
                        {"type": "reasoning.encrypted", "data": "opaque"},
                        {"type": "reasoning.text", "text": "add them."},
                    ]
                },
                "finish_reason": None,
            }
        ],
        "provider": "SomeUpstream",
    }
    assert parse_chunk(json.dumps(details_only)) == ChatDelta(reasoning="Plan: add them.")
    assert parse_chunk('{"choices": [], "usage": null}') == ChatDelta()
    assert parse_chunk('{"choices": [{"delta": null}]}') == ChatDelta()
    in_stream_error = {"error": {"message": "Upstream overloaded", "code": 502}, "choices": []}
    assert parse_chunk(json.dumps(in_stream_error)) == ChatDelta(
        error="Upstream overloaded (code 502)"
    )
    with pytest.raises(ProviderError, match="not JSON: '<html>"):
        parse_chunk("<html>oops</html>")
    with pytest.raises(ProviderError, match="not a JSON object"):
        parse_chunk("[1, 2]")


def test_deeply_nested_payloads_are_refused_not_parsed() -> None:
    # Found by benchmarks/fuzz.py: json.loads recursed once per level, and with
    # py_ecc's recursion limit (100 000) a deep document overflowed the C stack.
    deep = '{"choices": ' + "[" * 600 + "]" * 600 + "}"
    with pytest.raises(ProviderError, match="nested too deeply"):
        parse_chunk(deep)
    with pytest.raises(ProviderError, match="nested too deeply"):
        parse_completion(deep.encode())
    # Brackets inside strings are text, not nesting.
    brackets = json.dumps({"choices": [{"delta": {"content": "[{" * 2000 + '\\"'}}]})
    assert parse_chunk(brackets) == ChatDelta(content="[{" * 2000 + '\\"')


def test_deep_payloads_cannot_crash_a_process_with_a_raised_recursion_limit() -> None:
    script = (
        "import sys\n"
        "sys.setrecursionlimit(100_000)  # what importing eth-account (py_ecc) does\n"
        "from mppagent.llm import ProviderError, parse_chunk, parse_completion\n"
        "deep = '[' * 200_000 + ']' * 200_000\n"
        "for parse in (parse_chunk, parse_completion):\n"
        "    try:\n"
        "        parse(deep)\n"
        "    except ProviderError:\n"
        "        print('refused')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (0, "refused\nrefused\n"), done.stderr[-500:]
