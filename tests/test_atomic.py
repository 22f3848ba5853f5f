"""The one atomic-write helper: a whole file or none, the umask's permissions, errors naming the target."""

from __future__ import annotations

import errno

import pytest

from progvc.runtime.atomic import atomic_path, file_mode, write_bytes_atomic, write_text_atomic


def test_a_completed_write_replaces_the_target_with_the_umask_permissions(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == file_mode()
    write_bytes_atomic(target, b"\0\1")
    assert target.read_bytes() == b"\0\1" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_block_leaves_the_target_untouched_and_no_temporary_file(tmp_path):
    target = tmp_path / "a.mp4"
    target.write_bytes(b"keep me")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.name.startswith(".a.mp4.")
        tmp.write_bytes(b"partial")
        raise RuntimeError
    assert target.read_bytes() == b"keep me" and [p.name for p in tmp_path.iterdir()] == ["a.mp4"]


def test_errors_name_the_target_not_the_temporary_file(tmp_path):
    missing = tmp_path / "no" / "out.pvc"
    with pytest.raises(FileNotFoundError) as info:
        write_bytes_atomic(missing, b"x")
    assert info.value.filename == str(missing) and ".part" not in str(info.value)
    target = tmp_path / "out.pvc"
    with pytest.raises(OSError) as info, atomic_path(target) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir())
