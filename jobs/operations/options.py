"""A batch's options as users give them (CLI flags, API parameters, schedule fields),
checked and turned into `BatchOptions` in one place, so every front end means the same."""

from __future__ import annotations

from dataclasses import dataclass

from config import Settings
from jobs.operations.producer import BatchOptions
from jobs.queue.priority import Priority
from jobs.store.guardrails import NO_GUARD, GuardRule
from jobs.store.interface import BatchMode


class OptionError(ValueError):
    """An option a batch cannot run with; the message names it."""


@dataclass(frozen=True)
class Choices:
    """What a user chose for one batch; None means "the default"."""

    dry_run: bool = False
    force: bool = False
    read_first: bool = True
    priority: str = "normal"
    canary: int = 0
    guard: bool = True
    guard_threshold: float | None = None
    guard_window: int | None = None
    allow_overlap: bool = False


def default_guard(settings: Settings) -> GuardRule:
    """The failure guard a batch gets unless it says otherwise (PHONEBATCH_GUARD_*)."""
    return GuardRule(threshold=settings.guard_threshold, window=settings.guard_window)


def guard_rule(
    defaults: GuardRule, *, on: bool = True, threshold: float | None = None,
    window: int | None = None,
) -> GuardRule:  # fmt: skip
    """The failure guard: the defaults, unless turned off or overridden."""
    if not on:
        return NO_GUARD
    share = defaults.threshold if threshold is None else threshold
    size = defaults.window if window is None else window
    if not 0 < share < 1:
        raise OptionError(f"guard threshold {share:g}: give a share between 0 and 1, e.g. 0.2")
    if size < 0:
        raise OptionError(f"guard window {size}: give a number of outcomes, 0 or more")
    return GuardRule(threshold=share, window=size) if size else NO_GUARD


def batch_options(choices: Choices, defaults: GuardRule) -> BatchOptions:
    """The options a new batch runs with (`defaults`: the failure guard unless it says
    otherwise), or `OptionError` naming the one that is wrong."""
    if choices.dry_run and not choices.read_first:
        raise OptionError("a dry run reads every number: --dry-run cannot go with --no-read")
    try:
        priority = Priority(choices.priority)
    except ValueError:
        known = ", ".join(p.value for p in Priority)
        raise OptionError(f"priority {choices.priority!r}: use one of {known}") from None
    if choices.canary < 0:
        raise OptionError(f"canary {choices.canary}: give a number of numbers, 1 or more")
    dry = choices.dry_run
    guard = guard_rule(
        defaults, on=choices.guard, threshold=choices.guard_threshold, window=choices.guard_window
    )
    return BatchOptions(
        mode=BatchMode.DRY_RUN if dry else BatchMode.UPDATE,
        force=choices.force,
        read_first=choices.read_first,
        priority=priority,
        # A dry run sends nothing: no canary to look at, no failure to guard against,
        # and no number it could change twice.
        canary=0 if dry else choices.canary,
        guard=NO_GUARD if dry else guard,
        allow_overlap=choices.allow_overlap,
    )
