"""The workers' Redis transport: kombu's, reusing one client per pool."""

from __future__ import annotations

from kombu import Connection

from worker.broker import Channel, Transport


def test_one_client_per_pool_and_a_new_one_after_a_reconnect(redis_url: str) -> None:
    with Connection(redis_url, transport=Transport) as connection:
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        first = channel._create_client()
        assert channel._create_client() is first
        assert first.ping()
        channel._disconnect_pools()  # what kombu does when the connection is lost
        second = channel._create_client()
        assert second is not first and second.ping()
        assert channel._create_client(asynchronous=True) is not second


def test_the_celery_app_uses_it_for_plain_redis_only() -> None:
    from config import load_settings
    from worker.app import app, create_app

    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)
    tls = create_app(load_settings(redis_url="rediss://redis.example:6380/0"))
    with tls.connection_for_write() as connection:
        # kombu's own transport, which turns TLS on for rediss://
        assert not isinstance(connection.transport, Transport)
        assert connection.transport_cls == "rediss" and connection.ssl
