"""Verbatim examples from draft-httpauth-payment-00 (tempoxyz/mpp-specs).

Multi-line header examples are kept as the lines printed in the draft; a client
receives them with each obs-fold (line break plus indentation) replaced by
whitespace (RFC 9112 §5.2), which :func:`unfold` reproduces.
"""

from __future__ import annotations

# §"Example Challenge"
EXAMPLE_CHALLENGE_LINES = (
    'Payment id="x7Tg2pLqR9mKvNwY3hBcZa",',
    '    realm="api.example.com",',
    '    method="example",',
    '    intent="charge",',
    '    expires="2025-01-15T12:05:00Z",',
    '    request="eyJhbW91bnQiOiIxMDAwIiwiY3VycmVuY3kiOiJVU0QiLCJyZWNpcGllbnQiOiJhY2N0XzEyMyJ9"',
)
EXAMPLE_REQUEST = "eyJhbW91bnQiOiIxMDAwIiwiY3VycmVuY3kiOiJVU0QiLCJyZWNpcGllbnQiOiJhY2N0XzEyMyJ9"

# §"Example Credential"
EXAMPLE_CREDENTIAL = (
    "Payment eyJjaGFsbGVuZ2UiOnsiaWQiOiJ4N1RnMnBMcVI5bUt2TndZM2hCY1phIiwicmVhbG0iOiJhcGkuZXhh"
    "bXBsZS5jb20iLCJtZXRob2QiOiJleGFtcGxlIiwiaW50ZW50IjoiY2hhcmdlIiwicmVxdWVzdCI6ImV5SmhiVzkx"
    "Ym5RaU9pSXhNREF3SWl3aVkzVnljbVZ1WTNraU9pSlZVMFFpTENKeVpXTnBjR2xsYm5RaU9pSmhZMk4wWHpFeU15"
    "SjkiLCJleHBpcmVzIjoiMjAyNS0wMS0xNVQxMjowNTowMFoifSwicGF5bG9hZCI6eyJwcm9vZiI6IjB4YWJjMTIz"
    "Li4uIn19"
)

# §"Examples" / "One-Time Charge"
ONE_TIME_CHALLENGE_LINES = (
    'Payment id="qB3wErTyU7iOpAsD9fGhJk",',
    '    realm="api.example.com",',
    '    method="invoice",',
    '    intent="charge",',
    '    expires="2025-01-15T12:05:00Z",',
    '    request="eyJhbW91bnQiOiIxMDAwIiwiY3VycmVuY3kiOiJVU0QiLCJpbnZvaWNlIjoiaW52XzEyMzQ1In0"',
)
ONE_TIME_REQUEST = "eyJhbW91bnQiOiIxMDAwIiwiY3VycmVuY3kiOiJVU0QiLCJpbnZvaWNlIjoiaW52XzEyMzQ1In0"
ONE_TIME_PROBLEM_BODY = b"""{
  "type": "https://paymentauth.org/problems/payment-required",
  "title": "Payment Required",
  "status": 402,
  "detail": "Payment required for access.",
  "challengeId": "qB3wErTyU7iOpAsD9fGhJk"
}"""
ONE_TIME_CREDENTIAL = (
    "Payment eyJpZCI6InFCM3dFclR5VTdpT3BBc0Q5ZkdoSmsiLCJwYXlsb2FkIjp7InByZWltYWdlIjoiMHhhYmMx"
    "MjMuLi4ifX0"
)
ONE_TIME_RECEIPT = (
    "eyJzdGF0dXMiOiJzdWNjZXNzIiwibWV0aG9kIjoiaW52b2ljZSIsInRpbWVzdGFtcCI6IjIwMjUtMDEtMTVUMTI6"
    "MDA6MDBaIiwicmVmZXJlbmNlIjoiaW52XzEyMzQ1In0"
)

# §"Signed Authorization"
SIGNED_CHALLENGE_LINES = (
    'Payment id="zL4xCvBnM6kJhGfD8sAaWe",',
    '    realm="api.example.com",',
    '    method="signed",',
    '    intent="charge",',
    '    expires="2025-01-15T12:05:00Z",',
    '    request="eyJhbW91bnQiOiI1MDAwIiwiYXNzZXQiOiJVU0QiLCJyZWNpcGllbnQiOiIweDc0MmQzNUNjNjYzNEMw'
    'NTMyOTI1YTNiODQ0QmM5ZTc1OTVmOGZFMDAiLCJub25jZSI6IjB4MTIzNDU2Nzg5MCJ9"',
)

# §"Challenge Negotiation with Accept-Payment": one header line per challenge,
# with the draft's placeholder request="...".
NEGOTIATION_HEADERS = (
    'Payment id="pT7yHnKmQ2wErXsZ5vCbNl", realm="api.example.com", method="tempo", '
    'intent="charge", request="..."',
    'Payment id="nH6xJkLpO3qRtYsA6wDcVb", realm="api.example.com", method="tempo", '
    'intent="session", request="..."',
    'Payment id="mF8uJkLpO3qRtYsA6wDcVb", realm="api.example.com", method="stripe", '
    'intent="charge", request="..."',
    'Payment id="kD4vLmNpQ2rStUwX5yAbCe", realm="api.example.com", method="solana", '
    'intent="charge", request="..."',
)

# §"Failed Payment Verification"
VERIFICATION_FAILED_BODY = b"""{
  "type": "https://paymentauth.org/problems/verification-failed",
  "title": "Payment Verification Failed",
  "status": 402,
  "detail": "Invalid payment proof."
}"""


def unfold(lines: tuple[str, ...], joiner: str = " ") -> str:
    """Join a folded header as a client receives it."""
    return joiner.join(line.strip() for line in lines)
