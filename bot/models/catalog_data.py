"""The built-in model catalog: common current models of the built-in providers, as plain data."""

from __future__ import annotations

from typing import Final

from bot.config.schema import InputKind

TEXT: Final[tuple[InputKind, ...]] = ("text",)
VISION: Final[tuple[InputKind, ...]] = ("text", "image")

# (provider, model id, display name, input, context window, max output tokens)
BuiltinRow = tuple[str, str, str, tuple[InputKind, ...], int | None, int | None]

# OpenRouter mirrors use the same last segment as the first-party id on purpose: the picker groups by
# that segment, so "claude-sonnet-4-5" is one entry offered by anthropic and openrouter.
BUILTIN_MODELS: Final[tuple[BuiltinRow, ...]] = (
    ("anthropic", "claude-opus-5-5", "Claude Opus 5.5", VISION, 200_000, 64_000),
    ("anthropic", "claude-sonnet-5-5", "Claude Sonnet 5.5", VISION, 200_000, 64_000),
    ("anthropic", "claude-haiku-5-5", "Claude Haiku 5.5", VISION, 200_000, 64_000),
    ("anthropic", "claude-opus-4-6", "Claude Opus 4.6", VISION, 200_000, 64_000),
    ("anthropic", "claude-sonnet-4-6", "Claude Sonnet 4.6", VISION, 200_000, 64_000),
    ("anthropic", "claude-opus-4-5", "Claude Opus 4.5", VISION, 200_000, 64_000),
    ("anthropic", "claude-sonnet-4-5", "Claude Sonnet 4.5", VISION, 200_000, 64_000),
    ("anthropic", "claude-haiku-4-5", "Claude Haiku 4.5", VISION, 200_000, 64_000),
    ("openai", "gpt-5.5", "GPT-5.5", VISION, 400_000, 128_000),
    ("openai", "gpt-5.4", "GPT-5.4", VISION, 400_000, 128_000),
    ("openai", "gpt-5.4-mini", "GPT-5.4 mini", VISION, 400_000, 128_000),
    ("openai", "gpt-5.2", "GPT-5.2", VISION, 400_000, 128_000),
    ("openai", "gpt-5.2-mini", "GPT-5.2 mini", VISION, 400_000, 128_000),
    ("openai", "gpt-5", "GPT-5", VISION, 400_000, 128_000),
    ("openai", "gpt-5-mini", "GPT-5 mini", VISION, 400_000, 128_000),
    ("openai", "gpt-4.1", "GPT-4.1", VISION, 1_047_576, 32_768),
    ("openai", "gpt-4o", "GPT-4o", VISION, 128_000, 16_384),
    ("openai", "o3", "o3", VISION, 200_000, 100_000),
    ("openai", "o4-mini", "o4-mini", VISION, 200_000, 100_000),
    ("openrouter", "anthropic/claude-sonnet-4-5", "Claude Sonnet 4.5 (OpenRouter)", VISION, 200_000, 64_000),
    ("openrouter", "anthropic/claude-opus-4-5", "Claude Opus 4.5 (OpenRouter)", VISION, 200_000, 64_000),
    ("openrouter", "openai/gpt-5.2", "GPT-5.2 (OpenRouter)", VISION, 400_000, 128_000),
    ("openrouter", "google/gemini-2.5-pro", "Gemini 2.5 Pro (OpenRouter)", VISION, 1_048_576, 65_536),
    ("openrouter", "moonshotai/kimi-k2", "Kimi K2 (OpenRouter)", TEXT, 131_072, None),
    ("openrouter", "deepseek/deepseek-chat", "DeepSeek V3 (OpenRouter)", TEXT, 128_000, None),
    ("google", "gemini-2.5-pro", "Gemini 2.5 Pro", VISION, 1_048_576, 65_536),
    ("google", "gemini-2.5-flash", "Gemini 2.5 Flash", VISION, 1_048_576, 65_536),
    ("groq", "llama-3.3-70b-versatile", "Llama 3.3 70B (Groq)", TEXT, 131_072, 32_768),
    ("mistral", "mistral-large-latest", "Mistral Large", TEXT, 131_072, None),
    ("deepseek", "deepseek-chat", "DeepSeek V3", TEXT, 128_000, 8_192),
    ("deepseek", "deepseek-reasoner", "DeepSeek R1", TEXT, 128_000, 64_000),
    ("xai", "grok-4", "Grok 4", VISION, 256_000, None),
    # The offline demo provider (docs/configuration.md §6): scripted models that need no key and no network.
    ("demo", "echo", "Demo echo", TEXT, 8_192, 1_024),
    ("demo", "story", "Demo story", TEXT, 8_192, 1_024),
    ("demo", "vision", "Demo vision", VISION, 8_192, 1_024),
    ("demo", "broken", "Demo broken (always fails)", TEXT, 8_192, 1_024),
)
