"""Loopback fakes of the servers modelbot talks to (LLM providers, Telegram, Discord)."""
