"""Retrieval: what a chat's prompt is given beyond its kept window.

Two sources, one ranking: the chat's own stored messages that fell out of the window (memory)
and the documents the chat was given (knowledge). Both are cut into chunks, indexed after the
turn that stored them (keywords in the database's full-text index, vectors from an embedder),
searched together (keywords + vectors, fused) and placed after the kept history, just before
the new message, as quoted context within their own token budgets.
"""
