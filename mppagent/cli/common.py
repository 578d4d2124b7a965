"""Pieces shared by the CLI commands: settings from arguments, and the agent they build."""

from __future__ import annotations

import argparse

from mppagent.agent import Agent
from mppagent.cli.config import Settings, load_settings
from mppagent.session.store import SqliteChannelStore
from mppagent.transport.paying import Observer

__all__ = ["agent_from", "settings_from"]


def settings_from(args: argparse.Namespace) -> Settings:
    """Resolve settings for this invocation (flags > environment > config file)."""
    return load_settings(
        config=args.config,
        rpc_url=args.rpc_url,
        store=args.store,
        keystore=args.keystore,
        provider=getattr(args, "provider", None),
    )


def agent_from(settings: Settings, *, observer: Observer | None = None) -> Agent:
    """The paying agent described by ``settings``."""
    store = (
        SqliteChannelStore(settings.store_path)
        if settings.store_path
        else SqliteChannelStore.default()
    )
    return Agent(
        private_key=settings.private_key(),
        rpc_url=settings.require_rpc(),
        policy=settings.policy,
        store=store,
        observer=observer,
    )
