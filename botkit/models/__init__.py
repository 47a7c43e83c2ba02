"""Getting models: GGUF files from the Hugging Face Hub (pull, verify, list, remove) and Ollama
pulls through the daemon. The CLI's `botkit models` and the llama.cpp backend's `model = ...`
key both resolve through here."""
