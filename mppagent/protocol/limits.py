"""Size limits applied to everything a peer sends us.

The Payment scheme carries attacker-controlled text in headers and bodies. Each
parser checks these limits *before* doing work proportional to the input, so a
hostile peer can make us reject a message but never make us spend unbounded
memory or recursion on it. The draft asks servers to keep challenges under 8 KB
and clients to handle at least 4 KB, so these limits leave generous headroom for
honest peers.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_PROBLEM_BYTES",
    "MAX_TOTAL_HEADER_BYTES",
]

#: Largest single header value (``WWW-Authenticate``, ``Authorization``,
#: ``Payment-Receipt``, ``Accept-Payment``) accepted, in UTF-8 bytes.
MAX_HEADER_BYTES: Final = 64 * 1024

#: Largest sum of all ``WWW-Authenticate`` values of one response, in UTF-8 bytes.
MAX_TOTAL_HEADER_BYTES: Final = 256 * 1024

#: Largest JSON document decoded from a header or an event, in UTF-8 bytes.
MAX_JSON_BYTES: Final = 64 * 1024

#: Deepest nesting of JSON arrays/objects accepted (the top-level value counts as 1).
MAX_JSON_DEPTH: Final = 32

#: Largest problem-details body that :func:`~mppagent.protocol.parse_problem` parses.
MAX_PROBLEM_BYTES: Final = 64 * 1024
