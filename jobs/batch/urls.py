"""URLs as they may be shown: never with a password in them."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def safe_url(url: str) -> str:
    """`redis://:secret@host:6379/0` -> `redis://:***@host:6379/0`; each address of a
    list (`sentinel://...;sentinel://...`) alike."""
    if ";" in url:
        return ";".join(safe_url(part) for part in url.split(";"))
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a URL we can read: show nothing that might be a password
        return url.split("://", 1)[0] + "://***" if "@" in url else url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
