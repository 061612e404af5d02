"""Addresses written into Alertmanager's and Nix's configuration, checked for where they lead:
a webhook URL whose host is the one it reads as (no user-info, no look-alike Unicode, a real port),
mail addresses and relays as Alertmanager reads them, Nix caches that must prove what they serve."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qs, urlsplit

WEBHOOK_URL = (
    "an http:// or https:// URL without spaces, quotes or backslashes, without user:password@ (put a token in "
    "alert_webhook_token), whose host is an ASCII name or an IP address and whose port, if any, is 1 to 65535"
)
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


def _is_host(host: str) -> bool:
    """A DNS name of ASCII letters, digits and hyphens, or an IP address."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return _HOST.fullmatch(host) is not None


def webhook_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s\"'\\<>`]+", value) or not value.isascii():
        raise ValueError(WEBHOOK_URL)
    parts = urlsplit(value)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        raise ValueError(WEBHOOK_URL) from None
    if "@" in parts.netloc or "%" in parts.netloc or port == 0 or not _is_host(host):
        raise ValueError(WEBHOOK_URL)
    return value


EMAIL = "a mail address such as 'oncall@example.com' (letters, digits and . _ % + - before the @, a DNS name after)"
EMAIL_PATTERN = (
    r"^[A-Za-z0-9_%+-]+(\.[A-Za-z0-9_%+-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
SMTP_HOST = "a host and port such as 'smtp.example.com:587' (the port from 1 to 65535)"


def smtp_host(value: str) -> str:
    host, _, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(SMTP_HOST)
    if not (port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535 and _is_host(host)):
        raise ValueError(SMTP_HOST)
    return value


CACHE_URL = (
    "a list of binary cache URLs such as 'https://cache.nixos.org': https://, s3://, ssh://, ssh-ng:// or file://, "
    "not plain http:// (anyone on the way could swap what it serves) and not marked ?trusted=1 (Nix would then "
    "take its paths unsigned)"
)


def cache_url(value: str) -> str:
    if not re.fullmatch(r"(https|file|ssh|ssh-ng|s3)://\S+", value):
        raise ValueError(CACHE_URL)
    query = parse_qs(urlsplit(value).query)
    if any(key.lower() == "trusted" for key in query):
        raise ValueError(CACHE_URL)
    return value
