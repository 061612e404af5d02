"""What makes a secret too weak to guard anything: too few different characters (all zeros, one
letter repeated), or a placeholder left in place of the real one (a docs example, an unexpanded
${VAR}, a <key> template)."""

from __future__ import annotations

# Lower-case words of placeholders and documentation examples (vLLM's own docs use token-abc123).
PLACEHOLDER_WORDS = (
    "changeme",
    "change-me",
    "change_me",
    "example",
    "placeholder",
    "replace-me",
    "replace_me",
    "replaceme",
    "your-",
    "your_",
    "yourkey",
    "yourtoken",
    "dummy",
    "insecure",
    "redacted",
    "token-abc123",
    "secret-key",
)
DIFFERENT_CHARACTERS = 8


def weak_secret(raw: str) -> bool:
    lowered = raw.lower()
    return (
        len(set(raw)) < DIFFERENT_CHARACTERS
        or raw.startswith("$")
        or "${" in raw
        or "{{" in raw
        or (raw.startswith("<") and raw.endswith(">"))
        or any(word in lowered for word in PLACEHOLDER_WORDS)
    )
