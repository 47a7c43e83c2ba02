"""The platform- and model-neutral core: events, routing, conversations, scheduling, streaming."""
