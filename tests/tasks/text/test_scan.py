"""SCAN: the grammar's size, hand-checked interpretations, the paper's split sizes, and the files on disk."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mmattn.tasks.text.scan import SCAN_SPLITS, interpret, make_scan, scan_pairs, scan_splits

L, R = "I_TURN_LEFT", "I_TURN_RIGHT"


def _seq(*parts: str, times: int = 1) -> str:
    """Actions `parts` repeated `times` times, space-separated."""
    return " ".join(list(parts) * times)


# Worked out by hand from the paper's interpretation rules, not from the generator.
HAND_CHECKED = {
    "jump": "I_JUMP",
    "turn left": L,
    "walk left": f"{L} I_WALK",
    "turn right twice": f"{R} {R}",
    "turn opposite right": f"{R} {R}",
    "walk opposite right thrice": _seq(R, R, "I_WALK", times=3),
    "run around right": _seq(R, "I_RUN", times=4),
    "turn around left": _seq(L, times=4),
    "look around left twice": _seq(L, "I_LOOK", times=8),
    "jump after walk thrice": "I_WALK I_WALK I_WALK I_JUMP",
    "run after run left": f"{L} I_RUN I_RUN",
    "look twice and jump left": f"I_LOOK I_LOOK {L} I_JUMP",
    "run opposite left and turn around right": f"{L} {L} I_RUN {R} {R} {R} {R}",
    "jump opposite left after walk around left": f"{_seq(L, 'I_WALK', times=4)} {L} {L} I_JUMP",
    "turn around left thrice after look": f"I_LOOK {_seq(L, times=12)}",
    # 4 rounds x 3 = 12 (turn, act) pairs on each side: the longest command, 48 actions.
    "jump around left thrice and walk around right thrice": (
        f"{_seq(L, 'I_JUMP', times=12)} {_seq(R, 'I_WALK', times=12)}"
    ),
}


def test_grammar_yields_20910_distinct_commands_of_at_most_48_actions() -> None:
    pairs = scan_pairs()
    commands = [c for c, _ in pairs]
    assert len(commands) == len(set(commands)) == 20910
    assert max(len(a.split(" ")) for _, a in pairs) == 48
    assert min(len(a.split(" ")) for _, a in pairs) == 1
    words = {w for c in commands for w in c.split(" ")}
    verbs = {"walk", "look", "run", "jump", "turn"}
    assert words == verbs | {"left", "right", "opposite", "around", "twice", "thrice", "and", "after"}
    assert {w for _, a in pairs for w in a.split(" ")} == {"I_WALK", "I_LOOK", "I_RUN", "I_JUMP", L, R}
    assert scan_pairs() == pairs  # deterministic


@pytest.mark.parametrize("command", sorted(HAND_CHECKED))
def test_hand_checked_interpretations(command: str) -> None:
    assert interpret(command) == HAND_CHECKED[command]
    assert dict(scan_pairs())[command] == HAND_CHECKED[command]


def test_parser_agrees_with_generator_on_every_command() -> None:
    assert all(interpret(c) == a for c, a in scan_pairs())


@pytest.mark.parametrize(
    "command",
    [
        "",
        "turn",
        "turn twice",
        "Walk",
        "walk walk",
        "walk  left",
        " walk",
        "walk around",
        "walk left opposite",
        "walk opposite",
        "jump thrice twice",
        "walk left and",
        "and walk",
        "walk and run and jump",
        "walk after run after jump",
        "fly left",
    ],
)
def test_commands_outside_the_grammar_are_rejected(command: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(command)) + " is not a SCAN command"):
        interpret(command)


@pytest.mark.parametrize(
    ("split", "sizes"),
    [
        # The paper: simple = 16,728 train / 4,182 test (80/20); length = 16,990 train / 3,920 test.
        ("simple", {"train": 15892, "valid": 836, "test": 4182}),
        ("length", {"train": 16140, "valid": 850, "test": 3920}),
    ],
)
def test_split_sizes_match_the_paper(split: str, sizes: dict[str, int]) -> None:
    parts = scan_splits(split)
    assert {k: len(v) for k, v in parts.items()} == sizes
    assert sizes["train"] + sizes["valid"] == {"simple": 16728, "length": 16990}[split]
    # The three parts partition the whole set.
    every = [c for part in parts.values() for c, _ in part]
    assert len(every) == len(set(every)) == 20910


def test_length_split_cuts_at_22_actions() -> None:
    parts = scan_splits("length", seed=3)
    n_actions = {k: [len(a.split(" ")) for _, a in v] for k, v in parts.items()}
    assert max(n_actions["train"] + n_actions["valid"]) == 22
    assert min(n_actions["test"]) == 24  # no command has exactly 23 actions
    assert max(n_actions["test"]) == 48
    # Only the validation draw depends on the seed.
    assert parts["test"] == scan_splits("length", seed=4)["test"]


def test_add_jump_split_matches_the_published_files() -> None:
    # Lake & Baroni's add_prim_split: 14,670 training lines (1,467 of them "jump" alone) and 7,706 test lines.
    parts = scan_splits("add_jump", val_fraction=0.0)
    assert {k: len(v) for k, v in parts.items()} == {"train": 14670, "valid": 0, "test": 7706}
    assert sum(c == "jump" for c, _ in parts["train"]) == 1467
    assert all("jump" not in c.split() for c, _ in parts["train"] if c != "jump")
    assert all("jump" in c.split() and c != "jump" for c, _ in parts["test"])
    held = scan_splits("add_jump")  # the validation draw keeps the copies of "jump" in train
    assert sum(c == "jump" for c, _ in held["train"]) == 1467 and len(held["valid"]) == 660


def test_splits_are_deterministic_and_seeded() -> None:
    a, b, c = scan_splits("simple", seed=0), scan_splits("simple", seed=0), scan_splits("simple", seed=1)
    assert a == b
    assert a["test"] != c["test"] and a["valid"] != c["valid"]
    # The test set does not move when only the validation share changes.
    assert scan_splits("simple", val_fraction=0.1)["test"] == a["test"]
    assert scan_splits("simple", val_fraction=0.0)["valid"] == []


def test_split_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match=r"unknown SCAN split 'jump'.*\['simple', 'length', 'add_jump'\]"):
        scan_splits("jump")
    with pytest.raises(ValueError, match=r"val_fraction must lie in \[0, 1\), got 1.0"):
        scan_splits("simple", val_fraction=1.0)


@pytest.mark.parametrize("split", SCAN_SPLITS)
def test_make_scan_writes_line_aligned_files(tmp_path: Path, split: str) -> None:
    root = make_scan(tmp_path, split=split, seed=2)
    assert root == (tmp_path / f"scan_{split}").absolute()
    expected = scan_splits(split, seed=2)
    names = {p.name for p in root.iterdir()}
    assert names == {"README.md", ".complete"} | {
        f"{s}.{x}" for s in ("train", "valid", "test") for x in ("cmd", "act")
    }
    for name, pairs in expected.items():
        cmd = (root / f"{name}.cmd").read_text(encoding="utf-8")
        act = (root / f"{name}.act").read_text(encoding="utf-8")
        assert cmd.endswith("\n") and act.endswith("\n")
        assert list(zip(cmd.splitlines(), act.splitlines(), strict=True)) == pairs
    readme = (root / "README.md").read_text()
    assert (
        "Lake" in readme and f"train {len(expected['train'])}" in readme and f"test {len(expected['test'])}" in readme
    )
    assert f"split={split}" in json.loads((root / ".complete").read_text())["version"]


def test_make_scan_is_write_once_and_refuses_other_settings(tmp_path: Path) -> None:
    root = make_scan(tmp_path)
    stamp = (root / "train.cmd").stat().st_mtime_ns
    assert make_scan(tmp_path) == root
    assert (root / "train.cmd").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"seed=1.*delete it"):
        make_scan(tmp_path, seed=1)
    with pytest.raises(ValueError, match="unknown SCAN split 'addprim_jump'"):
        make_scan(tmp_path, split="addprim_jump")
    assert not (tmp_path / "scan_addprim_jump").exists()
