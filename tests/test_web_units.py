"""The pages' pure parts (the session cookie and CSRF token, what a batch page shows, the
timeline's buckets) and, in process, who may see a page."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import redis

from jobs.api.guard import route_path
from jobs.store.interface import BatchState, BatchStatus, Counts
from jobs.store.timeline import BUCKET_SECONDS, MAX_BUCKETS, Bucket, parse
from jobs.web import session
from jobs.web.auth import back_to
from jobs.web.views import duration, progress

KEY = session.derive_key("a-token")


def test_a_session_reads_back_until_it_expires() -> None:
    cookie = session.issue(KEY, now=1000.0, lifetime=60)
    found = session.read(KEY, cookie, now=1059.0)
    assert found is not None and found.expires == 1060
    assert session.read(KEY, cookie, now=1060.0) is None


def test_a_forged_or_foreign_cookie_is_no_session() -> None:
    cookie = session.issue(KEY, now=1000.0)
    expires, nonce, signature = cookie.split(".")
    assert session.read(KEY, f"{int(expires) + 999}.{nonce}.{signature}", 1001) is None
    assert session.read(session.derive_key("another token"), cookie, 1001) is None
    for junk in ("", "x", "1.2", "..", "a.b.c"):
        assert session.read(KEY, junk, 1001) is None


def test_the_csrf_token_belongs_to_its_session() -> None:
    one = session.read(KEY, session.issue(KEY, 0), 1)
    two = session.read(KEY, session.issue(KEY, 0), 1)
    assert one is not None and two is not None
    assert session.csrf_ok(KEY, one, session.csrf_token(KEY, one))
    assert not session.csrf_ok(KEY, one, session.csrf_token(KEY, two))
    assert not session.csrf_ok(KEY, one, None)
    assert not session.csrf_ok(KEY, one, "")


def test_the_token_itself_is_not_in_the_cookie() -> None:
    assert "a-token" not in session.issue(KEY, 0)


def test_sign_in_only_goes_on_to_a_path_of_this_site() -> None:
    assert back_to("/ui/batches/x?status=failed") == "/ui/batches/x?status=failed"
    for elsewhere in ("https://evil.example/", "//evil.example/", "/\\evil.example", None, ""):
        assert back_to(elsewhere) == "/"


def _status(**fields: object) -> BatchStatus:
    base: dict[str, object] = {
        "batch_id": "b", "name": "n", "source": "web", "state": BatchState.RUNNING,
        "counts": Counts(total=100, pending=75, succeeded=25), "created_at": 0.0,
        "started_at": 100.0,
    }  # fmt: skip
    return BatchStatus(**(base | fields))  # type: ignore[arg-type]


def test_progress_rate_and_time_left() -> None:
    shown = progress(_status(), now=110.0)
    assert (shown.ended, shown.percent, shown.rate, shown.eta) == (25, 25, 2.5, 30.0)


def test_no_time_left_once_ended_or_paused() -> None:
    ended = _status(state=BatchState.COMPLETED, counts=Counts(total=4, succeeded=4),
                    finished_at=102.0)  # fmt: skip
    assert progress(ended, now=500.0).rate == 2.0
    assert progress(ended, now=500.0).eta is None
    assert progress(_status(state=BatchState.PAUSED), now=110.0).eta is None
    assert progress(_status(started_at=None), now=110.0).rate is None


def test_durations_read_at_a_glance() -> None:
    assert [duration(s) for s in (None, 12.4, 185, 3720)] == [
        "—",
        "12 s",
        "3 min 05 s",
        "1 h 02 min",
    ]


def test_timeline_buckets_fill_gaps_and_keep_the_last_hour() -> None:
    raw = {b"100:requests": b"10", b"110:limited": b"5", b"110:errors": b"1", b"junk": b"3"}
    assert parse(raw) == [Bucket(100, requests=10), Bucket(105), Bucket(110, limited=5, errors=1)]
    assert Bucket(100, requests=10).as_dict()["requests"] == 10 / BUCKET_SECONDS
    assert Bucket(100, requests=10).as_dict(now=102.0)["requests"] == 5  # still filling
    many = {f"{n * BUCKET_SECONDS}:requests": "1" for n in range(MAX_BUCKETS + 10)}
    buckets = parse(many)
    assert len(buckets) == MAX_BUCKETS and buckets[0].start == 10 * BUCKET_SECONDS
    assert parse({}) == []


def test_behind_a_proxy_routes_see_their_own_paths() -> None:
    # uvicorn --root-path /pb puts the prefix in front of the path the proxy passed on.
    assert route_path({"path": "/pb/ui/new", "root_path": "/pb"}) == "/ui/new"
    assert route_path({"path": "/pb", "root_path": "/pb"}) == "/"
    assert route_path({"path": "/pbx/ui/new", "root_path": "/pb"}) == "/pbx/ui/new"
    assert route_path({"path": "/healthz"}) == "/healthz"


def _answers(token: str | None, *requests: tuple[str, str, dict[str, str]]) -> list[Any]:
    """The app's answers to `requests` (method, path, form), in process (no server)."""
    import redis

    from config import Settings
    from jobs.store.redis_store import RedisReportStore
    from jobs.web.app import create_app

    store = RedisReportStore(redis.Redis(port=1), retention_seconds=60)  # never reached
    app = create_app(Settings(), store, token=token)

    async def send() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.request(m, p, data=d or None) for m, p, d in requests]

    return asyncio.run(send())


def test_opened_on_localhost_the_pages_need_no_sign_in_but_forms_their_token() -> None:
    form, post = _answers(None, ("GET", "/ui/new", {}), ("POST", "/ui/select", {"where": "a=b"}))
    assert form.status_code == 200 and 'name="csrf"' in form.text
    assert post.status_code == 403
    (closed,) = _answers("a-token", ("GET", "/ui/new", {}))
    assert closed.status_code == 303


def test_fields_of_newer_stores_show_whether_or_not_the_status_has_them(
    redis_client: redis.Redis,
) -> None:
    from jobs.store.keys import batch_key
    from jobs.store.redis_store import RedisReportStore
    from jobs.web.pages import _with_newer_fields

    store = RedisReportStore(redis_client, retention_seconds=60)
    redis_client.hset(batch_key("b"), mapping={"priority": "high", "canary": "5"})
    assert _with_newer_fields(store, {"batch_id": "b"}) == {
        "batch_id": "b", "priority": "high", "canary": 5
    }  # fmt: skip
    newer = {"batch_id": "b", "priority": "low", "paused_reason": None, "paused_by": None,
             "canary": 0}  # fmt: skip
    assert _with_newer_fields(store, newer) == newer
