"""The guard's session bindings: one user opening sessions cannot evict another's (issue #20)."""

from __future__ import annotations

from pathlib import Path

from privsynth_ui.custody import SESSIONS_PER_USER, Custody, SessionBindings


def test_opening_many_sessions_does_not_free_another_users_session_hash(tmp_path: Path) -> None:
    custody = Custody(tmp_path / "cache")
    assert custody.bind("victim-hash", "vera")
    # The old store kept the last 100,000 hashes of all users together: this many sessions of
    # the attacker's own pushed the victim's binding out, and the attacker could then claim it.
    for i in range(100_001):
        assert custody.bind(f"mallory-{i}", "mallory")
    assert not custody.bind("victim-hash", "mallory")
    assert custody.bind("victim-hash", "vera")


def test_a_user_past_the_cap_forgets_only_their_own_oldest_sessions() -> None:
    bindings = SessionBindings(per_user=3)
    assert bindings.bind("v1", "vera")
    for i in range(10):
        assert bindings.bind(f"m{i}", "mallory")
    assert bindings.owner("v1") == "vera"
    assert [bindings.owner(f"m{i}") for i in range(10)] == [None] * 7 + ["mallory"] * 3
    assert len(bindings) == 4
    # Using a session again makes it the most recent: it outlives newer but idle ones.
    assert bindings.bind("v2", "vera") and bindings.bind("v3", "vera")
    assert bindings.bind("v1", "vera")
    assert bindings.bind("v4", "vera")
    assert bindings.owner("v1") == "vera" and bindings.owner("v2") is None
    assert SESSIONS_PER_USER >= 100


def test_forgetting_a_user_drops_only_that_users_bindings() -> None:
    bindings = SessionBindings()
    assert bindings.bind("h-vera", "vera") and bindings.bind("h-mallory", "mallory")
    assert not bindings.bind("h-vera", "mallory")
    bindings.forget("vera")  # what signing out does
    assert bindings.owner("h-vera") is None
    assert bindings.owner("h-mallory") == "mallory"
    assert not bindings.bind("h-mallory", "vera")
