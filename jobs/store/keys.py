"""Every Redis key of the report store, and the parts of a key's name a script needs to
build it from a batch id it reads (the `{id}` hash tag keeps a batch's keys in one slot of
a Redis Cluster)."""

from __future__ import annotations

BATCHES_KEY = "phonebatch:batches"
# Live batches not yet seen ended, for the workers' self-resume sweep to look at (it
# forgets the ended ones): that sweep never walks every batch kept for the retention.
UNFINISHED_KEY = "phonebatch:batches:unfinished"
STAGING = "staging"  # a batch being written: no front end, worker or resume sees it
STAGING_SECONDS = 3600  # a submitter that died mid-way leaves keys that expire by this
WEBHOOKS_DUE_KEY = "phonebatch:webhooks:due"
WEBHOOKS_DELIVERING_KEY = "phonebatch:webhooks:delivering"
# Number id -> "<batch id>|<item index>": the batch whose pending item changes it now.
HOLDS_KEY = "phonebatch:holds"


def batch_key(batch_id: str) -> str:
    return f"phonebatch:{{{batch_id}}}:batch"


def items_key(batch_id: str) -> str:
    return f"phonebatch:{{{batch_id}}}:items"


def claims_key(batch_id: str) -> str:
    return f"phonebatch:{{{batch_id}}}:claims"


def bodies_key(batch_id: str) -> str:
    return f"phonebatch:{{{batch_id}}}:bodies"


def parked_key(batch_id: str) -> str:
    return f"phonebatch:{{{batch_id}}}:parked"


def expect_key(batch_id: str) -> str:
    return f"phonebatch:{{{batch_id}}}:expect"


def batch_key_parts() -> list[str]:
    """What comes before and after a batch id in its hash's name, for scripts that find
    the batch from an id they read."""
    before, _, after = batch_key("\n").partition("\n")
    return [before, after]


def guard_key(batch_id: str) -> str:
    """The failure guard's window: the last outcomes, newest first ('1' failed for good)."""
    return f"phonebatch:{{{batch_id}}}:guard"


def items_key_parts() -> list[str]:
    before, _, after = items_key("\n").partition("\n")
    return [before, after]


def snapshots_key(batch_id: str) -> str:
    return f"phonebatch:{{{batch_id}}}:before"
