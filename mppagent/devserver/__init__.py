"""The reference MPP session server: an OpenAI-compatible fake LLM that takes payments.

It exists so the client can be exercised end to end without a real provider:
the model is deterministic, every streamed token is one metered unit, and the
wire format can imitate the quirks of the providers the CLI profiles target.
"""
