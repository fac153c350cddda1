"""The one clock: the current time in UTC, written three ways.

- `iso_seconds`: `2025-01-02T03:04:05+00:00`, what run folders and manifests record
  (`created`, `finished`);
- `folder_stamp`: `20250102-030405`, a run folder's default name (sorts by time, no colons);
- `readable`: `2025-01-02 03:04 UTC`, the date line of a report.

Each takes the time to write (default: now), so one moment can be written several ways.
"""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso_seconds(when: dt.datetime | None = None) -> str:
    return (when or utc_now()).isoformat(timespec="seconds")


def folder_stamp(when: dt.datetime | None = None) -> str:
    return (when or utc_now()).strftime("%Y%m%d-%H%M%S")


def readable(when: dt.datetime | None = None) -> str:
    return (when or utc_now()).strftime("%Y-%m-%d %H:%M UTC")
