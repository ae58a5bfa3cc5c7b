"""One per-item failure record and one exit rule for every batch command (issue 14)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from flambient.errors import InputError, first_line
from flambient.outcome import EXIT_LOCKED, ItemError, batch_exit_code


def test_item_error_from_each_kind_of_exception() -> None:
    e = ItemError.from_exception("room1", InputError("truncated RAW file", Path("/s/a.nef"), "re-copy it"))
    assert (e.item, e.path, e.message, e.hint) == ("room1", "/s/a.nef", "truncated RAW file", "re-copy it")
    assert str(e) == str(InputError("truncated RAW file", Path("/s/a.nef"), "re-copy it"))
    assert e.brief() == "truncated RAW file (re-copy it)"
    rel = ItemError.from_exception("a.nef", InputError("bad", Path("/s/a.nef")), "a.nef")
    assert rel.path == "a.nef" and str(rel) == "a.nef: bad"
    disk = ItemError.from_exception("room2", OSError(errno.ENOSPC, "No space left on device", "/out/r.jpg"))
    assert str(disk) == "No space left on device: /out/r.jpg" and disk.exit_code == 1
    bug = ItemError.from_exception("room3", ValueError("first\nsecond"))
    assert str(bug) == "ValueError: first"
    assert str(ItemError.from_exception("x", KeyError())) == "KeyError"
    assert "smaller --tile" in str(ItemError.from_exception("x", MemoryError()))
    assert set(e.to_dict()) == {"item", "message", "path", "hint", "exit_code"}


@pytest.mark.parametrize("failures, locked, problems, code", [
    ([], 0, 0, 0), ([], 2, 0, EXIT_LOCKED), ([ItemError("a", "bad")], 3, 0, 1), ([], 1, 1, 1),
    ([ItemError("a", "bad"), ItemError("b", "worse", exit_code=3)], 0, 0, 3),
])
def test_batch_exit_rule(failures: list[ItemError], locked: int, problems: int, code: int) -> None:
    assert batch_exit_code(failures, locked=locked, problems=problems) == code


def test_first_line() -> None:
    assert first_line(RuntimeError("  one\ntwo  ")) == "one"
    assert first_line(RuntimeError("abcdef"), 3) == "abc"
    assert first_line(RuntimeError()) == "RuntimeError"
    assert first_line(OSError(), empty="cannot be loaded") == "cannot be loaded"
    assert first_line("text\nmore") == "text"
