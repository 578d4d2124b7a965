"""The reference MPP session server: an OpenAI-compatible fake LLM that meters tokens.

It is the counterparty mppagent is developed and tested against, and a tool
for building paid agents offline: ``mppagent serve`` runs it on loopback
against a local anvil chain (or any RPC with the escrow deployed). It follows
the session draft from the server's side and never imports the client's
session engine, so a bug there cannot cancel out here.
"""

from mppagent.devserver.app import DevServer, create_app
from mppagent.devserver.config import DevServerConfig
from mppagent.devserver.faults import Billing, Fault, parse_billing, parse_faults
from mppagent.devserver.server import RunningServer

__all__ = [
    "Billing",
    "DevServer",
    "DevServerConfig",
    "Fault",
    "RunningServer",
    "create_app",
    "parse_billing",
    "parse_faults",
]
