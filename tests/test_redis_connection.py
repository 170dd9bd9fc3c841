"""REDIS_URL read one way for every part: plain URLs to redis-py, sentinel:// as kombu reads
it, the master's name from the settings for the store and the broker alike."""

from __future__ import annotations

import pytest
from kombu.transport import redis as kombu_redis
from pydantic import ValidationError
from redis.sentinel import SentinelConnectionPool

from config import load_settings
from jobs.batch.urls import safe_url
from jobs.store.connection import RedisUrlError, client_for, connect, parse_sentinel_url
from worker.broker import SENTINEL_OURS, stay_on_sentinels, transport_path

SENTINELS = "sentinel://:pw@s1:26379/2;sentinel://s2:26380;sentinel://s3"


def test_a_sentinel_url_names_every_sentinel_and_takes_the_rest_from_the_first() -> None:
    found = parse_sentinel_url(SENTINELS)
    assert found.sentinels == (("s1", 26379), ("s2", 26380), ("s3", 26379))
    assert (found.db, found.password, found.username) == (2, "pw", None)


@pytest.mark.parametrize(
    "url",
    [
        "sentinel://s1:26379;sentinel://s2:26379/3",  # kombu would read database 0
        "sentinel://:a@s1:26379;sentinel://:b@s2:26379",
        "sentinel://s1:26379;redis://s2:6379",
        "sentinel://s1:26379/zero",
        "sentinel://s1:port",
    ],
)
def test_a_sentinel_url_read_two_ways_is_refused(url: str) -> None:
    with pytest.raises(RedisUrlError):
        parse_sentinel_url(url)


def test_the_same_database_said_twice_is_fine() -> None:
    assert parse_sentinel_url("sentinel://s1/4;sentinel://s2/4").db == 4


def test_a_client_follows_the_sentinels_and_needs_the_masters_name() -> None:
    client = connect(SENTINELS, sentinel_master="mymaster", socket_connect_timeout=1)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "pw"
    assert pool.connection_kwargs["retry"].get_retries() == 3  # redis.Redis's default
    with pytest.raises(RedisUrlError, match="PHONEBATCH_SENTINEL_MASTER"):
        connect(SENTINELS)
    with pytest.raises(RedisUrlError, match="must start with"):
        connect("http://localhost:6379/0")


def test_the_settings_give_the_master_and_refuse_a_sentinel_url_without_one() -> None:
    settings = load_settings(redis_url=SENTINELS, sentinel_master="group-a")
    pool = client_for(settings).connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "group-a"
    with pytest.raises(ValidationError, match="PHONEBATCH_SENTINEL_MASTER"):
        load_settings(redis_url=SENTINELS)


def test_a_list_of_sentinels_is_shown_without_its_password() -> None:
    assert safe_url(SENTINELS) == "sentinel://:***@s1:26379/2;sentinel://s2:26380;sentinel://s3"


def test_the_broker_takes_the_same_master_and_keeps_its_transport_on_failover() -> None:
    from worker.app import create_app

    app = create_app(load_settings(redis_url=SENTINELS, sentinel_master="group-a"))
    assert app.conf.broker_transport == SENTINEL_OURS
    assert app.conf.broker_transport_options["master_name"] == "group-a"
    with app.connection_for_write() as connection:
        assert connection.transport_cls == SENTINEL_OURS
        connection.maybe_switch_next()  # what kombu does when a connection fails
        assert connection.transport_cls == SENTINEL_OURS
        assert (connection.hostname, connection.port, connection.virtual_host) == ("s1", 26379, "2")
        assert len(connection.alt) == 3  # every sentinel, for the channel to ask
    assert next(stay_on_sentinels(SENTINELS.split(";"))) == "s1"


def test_on_sentinel_it_steps_aside_for_kombus_transport_when_asked_or_a_hook_is_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert transport_path(sentinel=True) == SENTINEL_OURS
    assert transport_path("kombu", sentinel=True) == "sentinel"
    monkeypatch.delattr(kombu_redis.SentinelChannel, "_sentinel_managed_pool")
    with caplog.at_level("WARNING", logger="worker.broker"):
        assert transport_path(sentinel=True) == "sentinel"
    assert "SentinelChannel._sentinel_managed_pool" in caplog.text
