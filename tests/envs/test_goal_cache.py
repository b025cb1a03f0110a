"""Disk cache of Meta-World goals: identical to fresh samples, read back, rebuilt when broken."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import metaworld
import pytest
from metaworld.types import Task

from mtrl.envs import goal_cache
from mtrl.envs.goal_cache import GoalKey
from mtrl.envs.metaworld_tasks import draw_goals, sample_goals

MT1_KEY = GoalKey("MT1", 7, "reach-v3")
OLD = 1_000_000_000  # an mtime long past: a rewrite of the file would change it


@pytest.fixture(scope="module")
def mt1_reference() -> dict[str, tuple]:
    """A fresh sample of MT1 reach-v3 goals, seed 7 (about 1 s)."""
    return draw_goals(*MT1_KEY)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Iterator[Path]:
    """An empty cache folder for this test, and no goals cached in the process."""
    monkeypatch.setenv("MTRL_CACHE_DIR", str(tmp_path / "cache"))
    sample_goals.cache_clear()
    yield tmp_path / "cache" / goal_cache.SUBDIR
    sample_goals.cache_clear()


def _load_as_a_new_process(key: GoalKey) -> dict[str, tuple]:
    """``sample_goals`` with an empty in-process cache, as in a new process."""
    sample_goals.cache_clear()
    return sample_goals(*key)


def assert_same_goals(got: dict[str, tuple], expected: dict[str, tuple]) -> None:
    assert list(got) == list(expected)
    for name, tasks in expected.items():
        assert len(got[name]) == len(tasks) == 50
        for a, b in zip(got[name], tasks, strict=True):
            assert type(a) is Task
            assert a.env_name == b.env_name == name
            assert type(a.data) is bytes and a.data == b.data


def test_cached_mt10_goals_equal_a_fresh_sample(cache):
    key = GoalKey("MT10", 3)
    path = goal_cache.goal_path(key)
    assert not path.exists()
    sampled = sample_goals(*key)  # no file yet: this one is sampled, then written
    assert path.is_file() and path.parent == cache
    assert_same_goals(_load_as_a_new_process(key), sampled)


def test_second_load_reads_the_file_without_sampling(cache, monkeypatch, mt1_reference):
    assert_same_goals(sample_goals(*MT1_KEY), mt1_reference)
    path = goal_cache.goal_path(MT1_KEY)
    os.utime(path, (OLD, OLD))

    def no_sampling(*args, **kwargs):
        raise AssertionError("goals were sampled again")

    monkeypatch.setattr(metaworld, "MT1", no_sampling)
    assert_same_goals(_load_as_a_new_process(MT1_KEY), mt1_reference)
    assert path.stat().st_mtime == OLD


def _foreign_header(raw: bytes, **fields) -> bytes:
    head, _, body = raw.partition(b"\n")
    return json.dumps({**json.loads(head), **fields}).encode() + b"\n" + body


def _two_goals_swapped(raw: bytes) -> bytes:
    """Still valid JSON and base64, but not what the checksum was taken of."""
    head, _, body = raw.partition(b"\n")
    payload = json.loads(body)
    goals = payload[MT1_KEY.env_name]
    goals[0], goals[1] = goals[1], goals[0]
    return head + b"\n" + json.dumps(payload).encode() + b"\n"


BROKEN = {
    "empty": lambda raw: b"",
    "truncated": lambda raw: raw[: len(raw) // 2],
    "garbage": lambda raw: os.urandom(len(raw)),
    "one byte changed": lambda raw: raw[:-20] + bytes([raw[-20] ^ 1]) + raw[-19:],
    "two goals swapped": _two_goals_swapped,
    "other metaworld version": lambda raw: _foreign_header(raw, metaworld="0.0.1"),
    "other seed": lambda raw: _foreign_header(raw, seed=8),
    "other env": lambda raw: _foreign_header(raw, env_name="push-v3"),
}


@pytest.mark.parametrize("breakage", list(BROKEN))
def test_broken_or_foreign_file_is_rebuilt(cache, mt1_reference, breakage):
    good = goal_cache.encode(MT1_KEY, mt1_reference)
    path = goal_cache.goal_path(MT1_KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(BROKEN[breakage](good))
    os.utime(path, (OLD, OLD))
    assert goal_cache.load(MT1_KEY) is None
    assert_same_goals(_load_as_a_new_process(MT1_KEY), mt1_reference)
    assert path.read_bytes() == good and path.stat().st_mtime != OLD


def test_unwritable_cache_dir_still_gives_goals(tmp_path, monkeypatch, capsys, mt1_reference):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # works as root too, unlike a read-only folder
    monkeypatch.setenv("MTRL_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(goal_cache, "_warned", False)
    sample_goals.cache_clear()
    assert_same_goals(sample_goals(*MT1_KEY), mt1_reference)
    assert goal_cache.save(GoalKey("MT1", 8, "reach-v3"), mt1_reference) is None
    sample_goals.cache_clear()
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and "cannot cache Meta-World goals" in warnings[0]


def test_racing_writers_never_show_a_partial_file(cache, mt1_reference):
    written = []

    def write_often():
        written.extend(goal_cache.save(MT1_KEY, mt1_reference) for _ in range(15))

    writers = [threading.Thread(target=write_often) for _ in range(3)]
    for w in writers:
        w.start()
    reads = []
    while any(w.is_alive() for w in writers):
        reads.append(goal_cache.load(MT1_KEY))
    for w in writers:
        w.join()
    reads.append(goal_cache.load(MT1_KEY))
    assert written == [goal_cache.goal_path(MT1_KEY)] * 45
    first = next(i for i, goals in enumerate(reads) if goals is not None)
    for goals in reads[first:]:  # once a file is there, every read sees a whole one
        assert goals is not None
        assert_same_goals(goals, mt1_reference)
    assert [p.name for p in cache.iterdir()] == [written[0].name]  # no temporary files left


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("MTRL_CACHE_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert goal_cache.cache_dir() == tmp_path / "m" / "metaworld-goals"
    monkeypatch.delenv("MTRL_CACHE_DIR")
    assert goal_cache.cache_dir() == tmp_path / "x" / "mtrl" / "metaworld-goals"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert goal_cache.cache_dir() == tmp_path / "h" / ".cache" / "mtrl" / "metaworld-goals"


def test_key_and_versions_name_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("MTRL_CACHE_DIR", str(tmp_path))
    names = {
        goal_cache.goal_path(k).name
        for k in [MT1_KEY, GoalKey("MT1", 8, "reach-v3"), GoalKey("MT1", 7, "push-v3")]
    }
    assert len(names) == 3
    assert goal_cache.goal_path(GoalKey("MT50", 0)).name.startswith("MT50-seed0-metaworld3.")
