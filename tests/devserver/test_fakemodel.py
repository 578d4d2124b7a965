"""The fake model: deterministic, exactly metered, text-like."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mppagent.devserver.fakemodel import (
    AUDIO_PART_TOKENS,
    IMAGE_PART_TOKENS,
    MESSAGE_OVERHEAD_TOKENS,
    VIDEO_PART_TOKENS,
    FakeModel,
    Token,
    count_prompt_tokens,
    prompt_text,
)


def test_golden_output_is_pinned() -> None:
    # Pinned so that any change to the generator (and so to every recorded test
    # expectation downstream) is deliberate.
    tokens = list(FakeModel().generate("hello", max_tokens=8, reasoning_tokens=3))
    assert tokens == [
        Token("Consider", "reasoning"),
        Token(" first", "reasoning"),
        Token(" fine", "reasoning"),
        Token("Open", "content"),
        Token(" stays", "content"),
        Token(" trusts", "content"),
        Token(" limits", "content"),
        Token(" over", "content"),
    ]
    assert list(FakeModel(7).generate("hello", max_tokens=4)) == [
        Token("Open", "content"),
        Token(" they", "content"),
        Token(" grows", "content"),
        Token(" model", "content"),
    ]


def test_identical_inputs_give_identical_tokens() -> None:
    a = list(FakeModel(3).generate("same prompt", max_tokens=500, reasoning_tokens=100))
    b = list(FakeModel(3).generate("same prompt", max_tokens=500, reasoning_tokens=100))
    assert a == b


def test_different_prompts_and_seeds_differ() -> None:
    def text(seed: int, prompt: str) -> str:
        return "".join(t.text for t in FakeModel(seed).generate(prompt, max_tokens=50))

    assert text(0, "alpha") != text(0, "beta")
    assert text(0, "alpha") != text(1, "alpha")
    assert text(0, "alpha") == text(0, "alpha")


@pytest.mark.parametrize(
    ("max_tokens", "reasoning"),
    [(0, 0), (1, 0), (1, 1), (2, 1), (16, 0), (17, 16), (33, 5), (1000, 250)],
)
def test_exact_count_and_split(max_tokens: int, reasoning: int) -> None:
    tokens = list(FakeModel().generate("p", max_tokens=max_tokens, reasoning_tokens=reasoning))
    assert len(tokens) == max_tokens
    assert [t.kind for t in tokens] == ["reasoning"] * reasoning + ["content"] * (
        max_tokens - reasoning
    )


def test_shorter_completion_is_a_prefix_of_a_longer_one() -> None:
    model = FakeModel()
    long = list(model.generate("q", max_tokens=300, reasoning_tokens=40))
    short = list(model.generate("q", max_tokens=100, reasoning_tokens=40))
    assert short == long[:100]


def test_text_reads_like_words() -> None:
    tokens = list(FakeModel().generate("shape", max_tokens=2000, reasoning_tokens=500))
    reasoning, content = tokens[:500], tokens[500:]
    for section in (reasoning, content):
        # Each channel starts a fresh text: no leading space, capital letter.
        assert not section[0].text.startswith(" ")
        assert section[0].text[0].isupper()
        assert all(t.text.startswith(" ") for t in section[1:])
        assert all(t.text.strip(" .,").isalpha() for t in section)
    texts = [t.text for t in tokens]
    assert any(t.endswith(".") for t in texts)
    assert any(t.endswith(",") for t in texts)
    # After a full stop the next word is capitalised.
    for before, after in itertools.pairwise(content):
        if before.text.endswith("."):
            assert after.text[1].isupper()
    # The two channels use different vocabularies, so reasoning is recognisable.
    assert {t.text.strip(" .,").lower() for t in reasoning} != {
        t.text.strip(" .,").lower() for t in content
    }


def test_large_generation_is_exact() -> None:
    # A speed sanity check without a timing assertion: this must simply finish.
    tokens = FakeModel().generate("big", max_tokens=100_000, reasoning_tokens=25_000)
    kinds = [t.kind for t in tokens]
    assert len(kinds) == 100_000
    assert kinds.count("reasoning") == 25_000


@pytest.mark.parametrize(
    ("max_tokens", "reasoning"),
    [(-1, 0), (5, 6), (5, -1), (True, 0), (5, False), (2.0, 0)],
)
def test_bad_arguments_fail_at_the_call(max_tokens: object, reasoning: object) -> None:
    with pytest.raises(ValueError, match="must be an integer"):
        FakeModel().generate("p", max_tokens=max_tokens, reasoning_tokens=reasoning)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(min_value=-(2**70), max_value=2**70),
    prompt=st.text(max_size=200),
    max_tokens=st.integers(min_value=0, max_value=120),
    data=st.data(),
)
def test_any_prompt_yields_exactly_the_requested_tokens(
    seed: int, prompt: str, max_tokens: int, data: st.DataObject
) -> None:
    reasoning = data.draw(st.integers(min_value=0, max_value=max_tokens))
    tokens = list(
        FakeModel(seed).generate(prompt, max_tokens=max_tokens, reasoning_tokens=reasoning)
    )
    assert len(tokens) == max_tokens
    assert sum(t.kind == "reasoning" for t in tokens) == reasoning
    assert all(t.text.strip() for t in tokens)
    assert tokens == list(
        FakeModel(seed).generate(prompt, max_tokens=max_tokens, reasoning_tokens=reasoning)
    )


def test_count_prompt_tokens_exact() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are terse."},  # 3 words
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "describe   these\nplease"},  # 3 words
                {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "high"}},
                {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
        {"role": "user", "content": ""},
    ]
    expected = (
        4 * MESSAGE_OVERHEAD_TOKENS
        + 3
        + 3
        + 2 * IMAGE_PART_TOKENS
        + VIDEO_PART_TOKENS
        + AUDIO_PART_TOKENS
    )
    assert count_prompt_tokens(messages) == expected
    assert expected == 16 + 6 + 170 + 256 + 64
    assert FakeModel().count_prompt_tokens(messages) == expected
    assert count_prompt_tokens([]) == 0


@pytest.mark.parametrize(
    "content",
    [[{"type": "file", "file": {}}], 42, ["bare string part"], [{"text": "no type"}]],
)
def test_count_prompt_tokens_rejects_what_the_wire_rejects(content: object) -> None:
    with pytest.raises(ValueError, match="content"):
        count_prompt_tokens([{"role": "user", "content": content}])


def test_prompt_text_is_stable_and_tells_media_apart() -> None:
    def image(url: str) -> list[dict[str, object]]:
        return [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ]

    assert (
        prompt_text(image("https://x/a.png"))
        == "user: what is this? <image_url url=https://x/a.png>"
    )
    assert prompt_text(image("https://x/a.png")) != prompt_text(image("https://x/b.png"))
    assert (
        prompt_text([{"role": "system", "content": "hi"}, {"role": "user", "content": "there"}])
        == "system: hi\nuser: there"
    )
