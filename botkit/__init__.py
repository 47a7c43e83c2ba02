"""botkit: run your own local LLM chat bot on llama.cpp or Ollama, behind any chat platform."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
