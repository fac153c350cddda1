"""The one clock: one moment written as ISO seconds, a folder stamp and a report date, all in UTC."""

import datetime as dt

from greyglass.clock import folder_stamp, iso_seconds, readable
from greyglass.runs import default_run_dir, write_config


def test_one_moment_three_ways():
    when = dt.datetime(2025, 1, 2, 3, 4, 5, 678_000, tzinfo=dt.timezone.utc)
    assert iso_seconds(when) == "2025-01-02T03:04:05+00:00"
    assert folder_stamp(when) == "20250102-030405"
    assert readable(when) == "2025-01-02 03:04 UTC"


def test_now_is_utc_and_stamps_sort_by_time(tmp_path):
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    created = dt.datetime.fromisoformat(write_config(tmp_path, "test")["created"])
    assert created.utcoffset() == dt.timedelta(0) and before <= created <= before + dt.timedelta(seconds=5)
    folder = dt.datetime.strptime(default_run_dir("test").name, "%Y%m%d-%H%M%S").replace(tzinfo=dt.timezone.utc)
    assert before <= folder <= before + dt.timedelta(seconds=5)
    stamps = [folder_stamp(created + dt.timedelta(seconds=s)) for s in (0, 9, 61, 3600, 86_400 * 40)]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
