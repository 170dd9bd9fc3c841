"""The rules of reads in bulk (`jobs.batch.reads`): what a read keeps, how old it may be, when
listing pays. Pure."""

from __future__ import annotations

from jobs.batch.reads import Read, keep_listing, kept_read, worth_listing

NUMBER = {
    "id": "n1", "provider": "twilio", "assistantId": "asst_1", "name": "Front desk",
    "twilioAuthToken": "tok-secret", "server": {"url": "https://x", "timeoutSeconds": 20},
}  # fmt: skip


def test_a_read_keeps_only_the_fields_the_body_sets() -> None:
    read = kept_read(NUMBER, {"provider": "twilio", "assistantId": "asst_2"}, at=5.0)
    assert read == Read(5.0, {"assistantId": "asst_1"})
    absent = kept_read(NUMBER, {"squadId": "sq"}, at=5.0)
    assert absent == Read(5.0, {})  # the number has none: the diff shows it as new


def test_no_read_is_kept_when_its_fields_hold_a_secret() -> None:
    assert kept_read(NUMBER, {"twilioAuthToken": "new"}, at=1.0) is None
    leaky = {**NUMBER, "server": {"url": "https://x", "secret": "s3"}}
    assert kept_read(leaky, {"server": {"url": "https://y"}}, at=1.0) is None
    headers = {**NUMBER, "server": {"url": "https://x", "headers": {"X-Key": "k"}}}
    assert kept_read(headers, {"server": {"url": "https://y"}}, at=1.0) is None
    assert kept_read(NUMBER, {"server": {"url": "https://y"}}, at=1.0) is not None


def test_a_read_is_fresh_for_its_max_age_only() -> None:
    read = Read(100.0, {})
    assert read.fresh(219.0, 120.0) and not read.fresh(221.0, 120.0)
    assert not read.fresh(99.0, 120.0)  # from the future: another host's clock, not trusted
    assert Read.from_json(read.as_json()) == read
    assert Read.from_json({"at": 1}) is None and Read.from_json(None) is None


def test_listing_is_tried_unless_its_pages_would_outnumber_the_numbers() -> None:
    assert not worth_listing(1, None, 1000)  # one number: one GET is cheaper
    assert worth_listing(2, None, 1000)  # never listed: try a page
    assert worth_listing(300, 250_000, 1000) is True  # 250 pages for 300 numbers
    assert worth_listing(200, 250_000, 1000) is False  # 250 pages for 200 numbers


def test_a_next_page_is_read_only_while_the_pages_paid_for_themselves() -> None:
    assert keep_listing(pages=1, found=2, unread=5, page_full=True)
    assert not keep_listing(pages=1, found=1, unread=5, page_full=True)  # could cost more
    assert not keep_listing(pages=1, found=40, unread=0, page_full=True)  # all read
    assert not keep_listing(pages=1, found=40, unread=5, page_full=False)  # the last page
