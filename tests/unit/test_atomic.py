"""Atomic writes: all or nothing under the real name, with the permissions a plain write gives."""

import os

import pytest

from greyglass.atomic import atomic_dir, atomic_path, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]


def test_written_files_and_folders_get_the_umask_mode_not_private_ones(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "model") as d:
            (d / "w").write_text("y")
        (tmp_path / "plain.txt").write_text("x")
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(old)
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "a.txt") == mode(tmp_path / "plain.txt") == 0o644
    assert mode(tmp_path / "model") == mode(tmp_path / "plain") == 0o755
