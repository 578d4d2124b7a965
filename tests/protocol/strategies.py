"""Hypothesis strategies for realistic and hostile protocol values."""

from __future__ import annotations

import json
from datetime import UTC

from hypothesis import strategies as st

from mppagent.protocol import (
    JSON,
    Challenge,
    JSONObject,
    b64url_encode,
    b64url_jcs_encode,
    did_pkh,
    format_rfc3339,
)

SAFE_INT = st.integers(-(2**53 - 1), 2**53 - 1)

json_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=16)
# JCS numbers are doubles: ints beyond 2**53 - 1 are refused, and floats beyond
# 2**53 come back as ints, so round trips are promised below that magnitude.
json_scalars: st.SearchStrategy[JSON] = st.one_of(
    st.none(),
    st.booleans(),
    SAFE_INT,
    st.floats(min_value=-(2.0**53), max_value=2.0**53, exclude_min=True, exclude_max=True),
    json_text,
)
json_values: st.SearchStrategy[JSON] = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(json_text, children, max_size=4),
    ),
    max_leaves=12,
)
json_objects: st.SearchStrategy[JSONObject] = st.dictionaries(json_text, json_values, max_size=5)

# Characters a header value may carry (no CTLs but HTAB, no DEL, no surrogates),
# weighted towards the ones quoting must get right.
_FORBIDDEN = "".join(chr(c) for c in [*range(9), *range(10, 32), 127])
header_text = st.text(
    alphabet=st.one_of(
        st.sampled_from('"\\ ,=;\t'),
        st.characters(exclude_categories=["Cs"], exclude_characters=_FORBIDDEN),
    ),
    max_size=24,
)

methods = st.from_regex(r"[a-z]{1,10}", fullmatch=True)
intents = st.from_regex(r"[A-Za-z0-9-]{1,12}", fullmatch=True)


@st.composite
def request_texts(draw: st.DrawFn) -> str:
    """A request as servers send it: usually JCS, sometimes another valid spelling."""
    obj = draw(json_objects)
    if draw(st.booleans()):
        return b64url_jcs_encode(obj)
    spelled = json.dumps(obj, indent=draw(st.sampled_from([None, 1])), ensure_ascii=False)
    return b64url_encode(spelled.encode())


expires_texts = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(format_rfc3339),
    st.sampled_from(
        ["2025-01-15T12:05:00Z", "2025-01-15t14:05:00.123+02:00", "2016-12-31T23:59:60z"]
    ),
)


@st.composite
def challenges(draw: st.DrawFn) -> Challenge:
    opaque = draw(st.none() | st.dictionaries(json_text, json_text, max_size=3))
    return Challenge(
        id=draw(header_text.filter(bool)),
        realm=draw(header_text),
        method=draw(methods),
        intent=draw(intents),
        request=draw(request_texts()),
        expires=draw(st.none() | expires_texts),
        digest=draw(st.none() | header_text.filter(bool)),
        description=draw(st.none() | header_text),
        opaque=None if opaque is None else b64url_jcs_encode(opaque),
    )


sources = st.one_of(
    st.none(),
    st.builds(
        did_pkh,
        st.integers(1, 2**63),
        st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
    ),
    st.just("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"),
)
