"""One way from REDIS_URL to a redis-py client, for every part of phonebatch: the CLI, the
HTTP API, the workers' runtime, the demo and the report store.

`redis://`, `rediss://` (TLS) and `unix://` go to redis-py's own `from_url`. A
`sentinel://` URL is read the way kombu's Sentinel transport reads it, so the broker and
the store find the same primary:

    sentinel://[[user]:password@]host:port[;sentinel://host:port...][/db]

Each address is a sentinel; the password (the Redis servers', not the sentinels') and
the database come from the first address, as kombu takes them. A later address naming
another database or password is refused rather than read two ways. The primary's name
is `PHONEBATCH_SENTINEL_MASTER` (kombu's transport option `master_name`).

The client asks the sentinels where the primary is each time it opens a connection, and
drops a connection whose server has become a replica (its READONLY answer becomes a
`ConnectionError`), so with a retry policy a command cut off by a failover is sent again,
to the promoted replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from config import Settings

SCHEMES = ("redis", "rediss", "unix", "sentinel")
SENTINEL_PORT = 26379
# How long asking one sentinel may take before the next is asked.
SENTINEL_TIMEOUT = 1.0


class RedisUrlError(ValueError):
    """REDIS_URL cannot be read; the message says what is wrong and what is expected."""


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """A `sentinel://` REDIS_URL: the sentinels' addresses, and what every server shares."""

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class _Address:
    host: str
    port: int
    db: int | None
    username: str | None
    password: str | None


# redis-py leaves its Sentinel classes untyped.
class FailoverConnection(SentinelManagedConnection):
    """A connection to the primary that asks the sentinels where it is on every reconnect.

    redis-py's asks them in `connect()` only: a pipeline (and the bulk writer) retried
    after a lost connection reconnects through `send_packed_command`, to the address of
    before (the dead primary) until its retries run out (redis/redis-py#3874)."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()  # type: ignore[no-untyped-call]
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def scheme_of(url: str) -> str:
    """The URL's scheme (of its first address, for a list of sentinels)."""
    return urlsplit(url.split(";", 1)[0].strip()).scheme


def parse_sentinel_url(url: str) -> SentinelUrl:
    """The sentinels and the database, credentials of a `sentinel://` URL (kombu's form)."""
    addresses = [_address(part.strip()) for part in url.split(";") if part.strip()]
    if not addresses:
        raise RedisUrlError("REDIS_URL names no sentinel")
    first = addresses[0]
    for other in addresses[1:]:
        if (other.db is not None and other.db != (first.db or 0)) or (
            other.password is not None and other.password != first.password
        ):
            raise RedisUrlError(
                "REDIS_URL: give the database and password once, in the first sentinel:// "
                "address (the broker reads them only there): sentinel://:PASSWORD@host:port"
                "/DB;sentinel://host:port;..."
            )
    return SentinelUrl(
        sentinels=tuple((a.host, a.port) for a in addresses),
        db=first.db or 0,
        username=first.username,
        password=first.password,
    )


def _address(part: str) -> _Address:
    try:
        split = urlsplit(part)
        port = split.port or SENTINEL_PORT
    except ValueError as exc:
        raise RedisUrlError(f"REDIS_URL: cannot read {part!r} ({exc})") from None
    if split.scheme != "sentinel" or not split.hostname:
        raise RedisUrlError(
            "REDIS_URL: every address of a Sentinel URL is sentinel://host:port, separated "
            f"by ';' (got {split.scheme or 'no scheme'}://{split.hostname or ''})"
        )
    path = split.path.strip("/")
    if path and not path.isdigit():
        raise RedisUrlError(f"REDIS_URL: the database must be a number (got {path!r})")
    return _Address(
        host=split.hostname,
        port=port,
        db=int(path) if path else None,
        username=unquote(split.username) if split.username else None,
        password=unquote(split.password) if split.password is not None else None,
    )


def connect(
    url: str,
    *,
    sentinel_master: str | None = None,
    sentinel_password: str | None = None,
    **options: Any,
) -> redis.Redis:
    """A client for REDIS_URL; `options` are redis-py's (`retry`, timeouts, ...) and apply
    to the connections to the Redis servers, whatever the scheme."""
    scheme = scheme_of(url)
    if scheme == "sentinel":
        address = parse_sentinel_url(url)
        return _sentinel_client(address, sentinel_master, sentinel_password, options)
    if scheme not in SCHEMES:
        raise RedisUrlError(
            f"REDIS_URL must start with {', '.join(s + '://' for s in SCHEMES)} (got {scheme!r})"
        )
    return redis.Redis.from_url(url, **options)


def client_for(settings: Settings, **options: Any) -> redis.Redis:
    """A client for the settings' Redis (REDIS_URL, and the Sentinel master's name)."""
    password = settings.sentinel_password
    return connect(
        settings.redis_url,
        sentinel_master=settings.sentinel_master,
        sentinel_password=password.get_secret_value() if password else None,
        **options,
    )


def _sentinel_client(
    address: SentinelUrl, master: str | None, sentinel_password: str | None, options: Any
) -> redis.Redis:
    if not master:
        raise RedisUrlError(
            "REDIS_URL is a sentinel:// URL: set PHONEBATCH_SENTINEL_MASTER to the name the "
            "sentinels monitor the primary under"
        )
    # A sentinel that is down is skipped at once for the next, never retried: the
    # retries belong to the commands, which ask the sentinels again each time.
    asking = {
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "socket_timeout": SENTINEL_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
        "password": sentinel_password,
    }
    # redis.Redis's own default policy, which a pool built here would not get.
    options.setdefault("retry", Retry(ExponentialWithJitterBackoff(base=1, cap=10), 3))
    manager = Sentinel(list(address.sentinels), sentinel_kwargs=asking)  # type: ignore[no-untyped-call]
    client = manager.master_for(  # type: ignore[no-untyped-call]
        master, db=address.db, username=address.username, password=address.password,
        connection_class=FailoverConnection, **options,
    )  # fmt: skip
    return cast(redis.Redis, client)
