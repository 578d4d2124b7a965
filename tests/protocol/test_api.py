"""The public surface: curated exports, the error tree, and purity."""

from __future__ import annotations

import ast
import pathlib
import pickle
import subprocess
import sys

import pytest

import mppagent.protocol as protocol
from mppagent.errors import MppagentError, PaymentError, ProtocolError
from mppagent.protocol import (
    CanonicalizationFailed,
    DuplicateJSONKey,
    EncodingError,
    HeaderTooLarge,
    InputTooLarge,
    InvalidAcceptPayment,
    InvalidAmount,
    InvalidBase64url,
    InvalidDID,
    InvalidJSON,
    InvalidTimestamp,
    JSONTooDeep,
    LimitExceeded,
    MalformedChallenge,
    MalformedCredential,
    MalformedReceipt,
    NonFiniteNumber,
    ProblemError,
    SessionProblem,
    UnknownProblem,
)

PACKAGE = pathlib.Path(protocol.__file__).parent


def test_all_names_exist_and_are_unique() -> None:
    assert len(set(protocol.__all__)) == len(protocol.__all__)
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


def test_every_public_class_and_function_is_exported() -> None:
    exported = set(protocol.__all__)
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                assert isinstance(node.value, ast.List)
                names = {elt.value for elt in node.value.elts if isinstance(elt, ast.Constant)}
                assert names <= exported, (path.name, names - exported)


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (EncodingError, (ProtocolError,)),
        (InvalidBase64url, (EncodingError,)),
        (InvalidJSON, (EncodingError,)),
        (DuplicateJSONKey, (InvalidJSON,)),
        (NonFiniteNumber, (InvalidJSON,)),
        (CanonicalizationFailed, (EncodingError,)),
        (LimitExceeded, (ProtocolError,)),
        (HeaderTooLarge, (LimitExceeded,)),
        (InputTooLarge, (LimitExceeded, EncodingError)),
        (JSONTooDeep, (LimitExceeded, InvalidJSON)),
        (InvalidAmount, (ProtocolError,)),
        (InvalidTimestamp, (ProtocolError,)),
        (InvalidDID, (ProtocolError,)),
        (InvalidAcceptPayment, (ProtocolError,)),
        (MalformedChallenge, (ProtocolError,)),
        (MalformedCredential, (ProtocolError,)),
        (MalformedReceipt, (ProtocolError,)),
        (ProblemError, (PaymentError,)),
        (SessionProblem, (ProblemError,)),
        (UnknownProblem, (ProblemError,)),
        (ProtocolError, (PaymentError,)),
        (PaymentError, (MppagentError,)),
    ],
)
def test_error_tree(cls: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    for base in bases:
        assert issubclass(cls, base)
    # Typed errors are never ValueErrors: pydantic would otherwise wrap them.
    assert not issubclass(cls, ValueError)


def test_protocol_and_problem_branches_are_disjoint() -> None:
    assert not issubclass(ProblemError, ProtocolError)
    assert not issubclass(ProtocolError, ProblemError)


FORBIDDEN_IMPORTS = {"httpx", "socket", "asyncio", "os", "pathlib", "sqlite3", "time", "random"}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "open", "urandom", "monotonic"}


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_protocol_modules_do_no_io(path: pathlib.Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert not {a.name.split(".")[0] for a in node.names} & FORBIDDEN_IMPORTS
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.module.split(".")[0] not in FORBIDDEN_IMPORTS
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert name not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} calls {name}()"


def test_importing_protocol_pulls_in_no_http_stack() -> None:
    code = (
        "import sys, mppagent.protocol; "
        "print(sorted(m for m in ('httpx', 'httpcore', 'web3', 'starlette') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "error",
    [
        InvalidBase64url("padding", what="request"),
        HeaderTooLarge("too big", limit=10, size=11, what="WWW-Authenticate"),
        JSONTooDeep("deep", limit=32, what="request"),
        DuplicateJSONKey("k", what="JSON"),
        InvalidAmount("spent", "negative"),
        MalformedChallenge("bad", header_index=1, offset=5, challenge_id="x"),
        MalformedCredential("bad"),
        MalformedReceipt("bad"),
        protocol.problem_for("session/insufficient-balance", "top up", requiredTopUp="25"),
        UnknownProblem("odd", type="https://example.com/x", status=418),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_pickling(error: Exception) -> None:
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is type(error)
    assert str(clone) == str(error)
    assert clone.__dict__ == error.__dict__
