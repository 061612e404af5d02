"""Version strings as numbers, read one way for every package the deploy compares."""

from __future__ import annotations

import re


def numbers(text: str) -> tuple[int, ...]:
    """The first dotted run of numbers, past a Debian epoch: '6.4.1-89' -> (6, 4, 1),
    '2.24.9pre1' -> (2, 24, 9), '5:28.0.1-1~debian' -> (28, 0, 1), 'nix (Nix) 2.18.1' -> (2, 18, 1)."""
    match = re.search(r"\d+(?:\.\d+)*", re.sub(r"^\d+:", "", text.strip()))
    return tuple(int(part) for part in match[0].split(".")) if match else ()


def shown(numbers: tuple[int, ...]) -> str:
    """(7, 0) -> '7.0'."""
    return ".".join(map(str, numbers))
