"""Model backends: llama.cpp in-process, and the protocol every backend implements."""
