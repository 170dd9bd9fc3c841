"""Reading numbers before writing them, in bulk: what a read keeps, when it is too old,
when listing pays. Pure.

A batch that reads first (to skip no-ops, show a dry run's diff, keep a snapshot for
rollback) reads its numbers through the listing (`GET /phone-number`, a page of up to
1,000 at a time) instead of one GET each, page by page just ahead of the sends
(`worker.reader`); each item's task then PATCHes from its number's read. The rules:

- **What a read keeps**: only the fields the item's body sets (all a diff, a skip, a
  snapshot or a rollback's conflict check looks at), and never a secret: a number whose
  kept fields hold one (a Twilio token, a server header, a password) is read again by
  GET when its task runs, so no secret of the account is ever written to Redis.
- **How old a read may be**: `max_age` seconds (`PHONEBATCH_READ_MAX_AGE`, 120 by
  default). A task that finds its read older reads the number again by GET: a listing
  may be minutes old by the time a long batch reaches a number.
- **When listing pays** (`worth_listing`, `keep_listing`): the listing is tried when the
  batch has at least 2 numbers and no earlier listing of the same account says it has so
  many numbers that the pages would outnumber the batch's. It goes on to a next page only
  while the pages so far found at least one number of the batch more than they cost, so
  that even a next page that finds nothing leaves the reads at most one request above a
  GET per number (the first page of a never-listed account is that one request). Numbers
  the listing never showed (past a stop, or in the `createdAt` paging gap) are read by
  GET, one each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from jobs.batch.redaction import redact

MAX_AGE_SECONDS = 120.0


def unread_key(batch_id: str) -> str:
    """number id -> "index,row" for each item of the batch the listing has not shown yet."""
    return f"phonebatch:{{{batch_id}}}:unread"


@dataclass(frozen=True, slots=True)
class Read:
    """A number's current values for the fields an item sets, and when they were read."""

    at: float  # Unix time of the listing page
    current: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at, "current": self.current}

    @classmethod
    def from_json(cls, data: Any) -> Read | None:
        if not isinstance(data, dict) or not isinstance(data.get("current"), dict):
            return None
        return cls(float(data.get("at", 0.0)), data["current"])

    def fresh(self, now: float, max_age: float) -> bool:
        return 0 <= now - self.at <= max_age


SECRET_WORDS = ("secret", "token", "password", "credential", "apikey", "api_key", "private")


def kept_read(number: dict[str, Any], fields: dict[str, Any], at: float) -> Read | None:
    """The part of a listed number an item's task needs (the `fields` its body sets), or
    None if that part holds a secret (the task then reads the number by GET, and nothing
    secret is kept): a value redaction would hide, or any key in a nested object whose
    name says secret, which the API may return though no update sends it."""
    current = {f: number[f] for f in fields if f != "provider" and f in number}
    if redact(current) != current or _names_a_secret(current):
        return None
    return Read(at, current)


def _names_a_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return any(
            any(word in str(key).lower() for word in SECRET_WORDS) or _names_a_secret(inner)
            for key, inner in value.items()
        )
    if isinstance(value, list):
        return any(_names_a_secret(inner) for inner in value)
    return False


def worth_listing(numbers: int, account_size: int | None, page_size: int) -> bool:
    """Whether to read a batch of `numbers` by listing rather than by GET each."""
    if numbers < 2:
        return False
    if account_size is None:
        return True
    return math.ceil(max(1, account_size) / page_size) < numbers


def keep_listing(pages: int, found: int, unread: int, page_full: bool) -> bool:
    """Read one more page? Only if there may be one, some numbers are still unread, and
    the pages so far paid for themselves with a number to spare."""
    return page_full and unread > 0 and found >= pages + 1
