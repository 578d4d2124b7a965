"""mppagent: pay for metered HTTP services, token by token, with the Machine Payments Protocol."""

__version__ = "0.1.0"
