"""The LLM layer: one async OpenAI-compatible client per process, a cache, the rules fallback."""
