"""What the guardrails keep with a batch, and how they name things. Pure.

The failure guard's rule (`GuardRule`), how long a holder still writing its items holds
its numbers, and the webhook outbox's entries (a batch's end, or a pause of its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class GuardRule:
    """When a batch pauses itself: more than `threshold` (a share, 0-1) of its last
    `window` outcomes failed for good (HTTP 4xx other than 429). A window of 0 is off."""

    threshold: float = 0.2
    window: int = 50

    @property
    def on(self) -> bool:
        return self.window > 0

    def as_dict(self) -> dict[str, Any] | None:
        return {"threshold": self.threshold, "window": self.window} if self.on else None


NO_GUARD = GuardRule(window=0)


# A staged batch's holds count this long: a submitter that died while writing its batch
# holds no number past it.
STAGED_HOLD_SECONDS = 600


@dataclass(frozen=True, slots=True)
class WebhookEntry:
    """An entry of the webhook outbox: a batch's end (`<id>`) or a pause of its own
    (`<id>|paused`), and the prefix of the fields that hold its state in the batch."""

    batch_id: str
    paused: bool

    @property
    def prefix(self) -> str:
        return "pause_webhook" if self.paused else "webhook"


def webhook_entry(entry: str) -> WebhookEntry:
    batch_id, _, kind = entry.partition("|")
    return WebhookEntry(batch_id, kind == "paused")
