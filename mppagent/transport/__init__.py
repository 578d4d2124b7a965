"""HTTP for payments: the paying httpx transport, the SSE splitter and unit meters."""
