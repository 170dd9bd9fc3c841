"""Named schedules from a TOML file (default `config/schedules.toml`). Pure.

    [[schedule]]
    name = "after-hours"
    cron = "0 19 * * 1-5"            # minute hour day month weekday [second]
    timezone = "America/New_York"     # IANA name; daylight saving handled
    ids = ["6f1d2a4e-...", "0c9e8d7f-..."]
    provider = "twilio"               # for ids without one
    set = { assistantId = "asst_after_hours" }
    # or: file = "after-hours.csv"    # a batch file, relative to this file
    webhook_url = "https://ops.example.com/hooks/phonebatch"   # optional
    priority = "high"                 # optional: high, normal (default) or low
    # canary = 5, guard = false, guard_threshold = 0.1, guard_window = 20,
    # allow_overlap = true: as the submit options of those names

A bad file is refused whole, naming the schedule and the field.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ScheduleError(Exception):
    """Raised when the schedules file or a schedule name is wrong; the message says where."""


class Schedule(BaseModel):
    """One `[[schedule]]` entry: when it runs, in which time zone, and what it sends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    cron: str
    timezone: str = "UTC"
    file: str | None = None
    ids: list[str] | None = None
    provider: str | None = None
    set: dict[str, Any] | None = None
    webhook_url: str | None = None
    dry_run: bool = False  # report what the schedule would change, send nothing
    priority: Literal["high", "normal", "low"] = "normal"
    canary: int = Field(default=0, ge=0)  # send this many numbers, then pause
    guard: bool = True  # pause by itself on a run of permanent failures
    guard_threshold: float | None = Field(default=None, gt=0, lt=1)
    guard_window: int | None = Field(default=None, ge=0)
    allow_overlap: bool = False  # fire even while another batch holds some of its numbers

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) not in (5, 6) or not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone (e.g. America/New_York)"
            ) from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Schedule:
        if (self.file is None) == (self.ids is None):
            raise ValueError("give either `file` (a batch file) or `ids` with `set`")
        if self.ids is not None and not self.set:
            raise ValueError("`ids` needs `set`: the values to give those numbers")
        if self.file is not None:
            path = PurePosixPath(self.file.replace("\\", "/"))
            if path.is_absolute() or ".." in path.parts or PureWindowsPath(self.file).drive:
                raise ValueError(
                    "`file` is a path relative to the schedules file, inside its folder "
                    "(no absolute path, no `..`)"
                )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def next_run(self, after: datetime) -> datetime:
        """The first run after `after`, in the schedule's own time zone."""
        return croniter(self.cron, after.astimezone(self.zone)).get_next(datetime)

    def slot_at(self, moment: datetime) -> datetime:
        """The scheduled time a run at `moment` belongs to: the latest one at or before it."""
        local = moment.astimezone(self.zone)
        if croniter.match(self.cron, local.replace(microsecond=0)):
            seconds = len(self.cron.split()) == 6
            return (
                local.replace(microsecond=0) if seconds else local.replace(second=0, microsecond=0)
            )
        return croniter(self.cron, local).get_prev(datetime)


def parse_schedules(text: str, origin: str = "schedules") -> list[Schedule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScheduleError(f"{origin}: not valid TOML: {exc}") from None
    unknown = set(data) - {"schedule"}
    if unknown:
        raise ScheduleError(f"{origin}: unknown top-level keys {sorted(unknown)}; use [[schedule]]")
    schedules: list[Schedule] = []
    for position, entry in enumerate(data.get("schedule", []), start=1):
        label = (
            f"schedule {entry.get('name', position)!r}"
            if isinstance(entry, dict)
            else f"schedule {position}"
        )
        try:
            schedules.append(Schedule.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "schedule"
            message = first["msg"].removeprefix("Value error, ")
            raise ScheduleError(f"{origin}: {label}, field {field}: {message}") from None
    names = [s.name for s in schedules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ScheduleError(f"{origin}: schedule names must be unique: {duplicates}")
    return schedules


def load_schedules(path: str | Path) -> list[Schedule]:
    file = Path(path)
    try:
        text = file.read_text("utf-8")
    except FileNotFoundError:
        raise ScheduleError(f"{file}: no such schedules file (set PHONEBATCH_SCHEDULES)") from None
    except UnicodeDecodeError as exc:  # say where, never print the file
        raise ScheduleError(f"{file}: not UTF-8 text (at byte {exc.start})") from None
    except OSError as exc:
        raise ScheduleError(f"{file}: cannot be read ({exc.strerror or 'error'})") from None
    return parse_schedules(text, str(file))


def find(schedules: list[Schedule], name: str) -> Schedule:
    for schedule in schedules:
        if schedule.name == name:
            return schedule
    known = ", ".join(s.name for s in schedules) or "none"
    raise ScheduleError(f"no schedule named {name!r} (known: {known})")


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
