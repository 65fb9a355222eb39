"""The SCAN command-to-action dataset (Lake & Baroni, 2018), generated from its grammar and written as parallel text.

SCAN maps navigation commands such as "jump opposite left after walk twice" to action sequences such as
"I_WALK I_WALK I_TURN_LEFT I_TURN_LEFT I_JUMP". The paper defines every command by a small phrase-structure grammar
and every action sequence by an interpretation function over it; this module enumerates the grammar and applies the
interpretation while it derives each command, so no download is needed and the 20,910 pairs come out exactly.

Grammar (the paper's, with `x` for a primitive verb or `turn`, which only ever comes with a direction):

    C -> S and S | S after S | S
    S -> V twice | V thrice | V
    V -> x opposite dir | x around dir | x dir | U        (x in U or "turn"; dir in left, right)
    U -> walk | look | run | jump

Interpretation: a verb `u` is its action `I_<U>`; `turn` contributes no action of its own. `x dir` turns once then
acts, `x opposite dir` turns twice then acts, `x around dir` turns-then-acts four times. `twice`/`thrice` repeat a
phrase, `S1 and S2` runs S1 then S2, and `S1 after S2` runs S2 then S1. That makes 4 + 5 * 3 * 2 = 34 V phrases,
34 * 3 = 102 S phrases and 102 + 2 * 102**2 = 20,910 commands, of 1 to 48 actions.

Splits: `simple` holds out a random 20% of all commands by seed, as in the paper; `length` trains on every command
whose action sequence has at most 22 actions and tests on the longer ones (24 to 48 actions), the paper's length
split. A validation split, which the paper does not have, is carved from training by seed for model selection;
for `length` it therefore holds short commands only and says nothing about length generalisation.
"""

from __future__ import annotations

from functools import cache, partial
from pathlib import Path

import numpy as np

from mmattn.data import ensure_dataset

__all__ = ["SCAN_SPLITS", "generate_scan", "interpret", "make_scan", "scan_pairs", "scan_splits"]

# Bump when the generator or the file layout changes, so an existing tree of an older generator is detected.
GENERATOR_VERSION = "1"
SCAN_SPLITS = ("simple", "length", "add_jump")
FILE_SPLITS = ("train", "valid", "test")
SOURCE_SUFFIX, TARGET_SUFFIX = "cmd", "act"
SIMPLE_TEST_FRACTION = 0.2
LENGTH_MAX_TRAIN_ACTIONS = 22
# The add-primitive split's training set repeats the command "jump" until it is a tenth of the set, as the paper's
# published files do (13,203 commands without "jump" + 1,467 copies of "jump").
ADD_JUMP_SHARE = 0.1

PRIMITIVES = {"walk": "I_WALK", "look": "I_LOOK", "run": "I_RUN", "jump": "I_JUMP"}
TURN = "turn"
DIRECTIONS = {"left": "I_TURN_LEFT", "right": "I_TURN_RIGHT"}
# How many times "x <modifier> dir" turns towards dir and acts, and how many turns precede each action.
MODIFIERS = {"": (1, 1), "opposite": (1, 2), "around": (4, 1)}
REPEATS = {"": 1, "twice": 2, "thrice": 3}
CONJUNCTIONS = ("and", "after")

Actions = tuple[str, ...]


def _verb_phrase(verb: str, modifier: str | None, direction: str | None) -> Actions:
    """Actions of one V phrase: `verb` alone (modifier and direction None) or `verb [modifier] direction`."""
    act = () if verb == TURN else (PRIMITIVES[verb],)
    if direction is None:
        return act
    rounds, turns = MODIFIERS[modifier or ""]
    return ((DIRECTIONS[direction],) * turns + act) * rounds


def _verb_phrases() -> list[tuple[str, Actions]]:
    """Every V phrase with its actions, in grammar order: bare primitives, then `x [modifier] dir`."""
    phrases = [(u, _verb_phrase(u, None, None)) for u in PRIMITIVES]
    for x in (*PRIMITIVES, TURN):
        for modifier in MODIFIERS:
            for direction in DIRECTIONS:
                words = " ".join(w for w in (x, modifier, direction) if w)
                phrases.append((words, _verb_phrase(x, modifier or None, direction)))
    return phrases


def _sentences() -> list[tuple[str, Actions]]:
    """Every S phrase with its actions: each V phrase alone, twice and thrice."""
    return [
        (f"{v} {repeat}".rstrip(), actions * times)
        for v, actions in _verb_phrases()
        for repeat, times in REPEATS.items()
    ]


@cache
def _pairs() -> tuple[tuple[str, str], ...]:
    """All (command, actions) pairs, cached because every split and `make_scan` call starts from them."""
    sentences = _sentences()
    pairs = [(s, " ".join(a)) for s, a in sentences]
    for s1, a1 in sentences:
        for s2, a2 in sentences:
            pairs.append((f"{s1} and {s2}", " ".join(a1 + a2)))
            pairs.append((f"{s1} after {s2}", " ".join(a2 + a1)))
    return tuple(pairs)


def scan_pairs() -> list[tuple[str, str]]:
    """Return all 20,910 SCAN (command, action sequence) pairs in a fixed grammar order.

    Single S commands come first, then for each pair of S phrases `S1 and S2` followed by `S1 after S2`.
    """
    return list(_pairs())


def _parse_verb_phrase(words: list[str], command: str) -> Actions:
    """Actions of the V phrase `words`; raise ValueError quoting `command` if it is not one."""
    verb, modifier, direction = (words[0] if words else None), None, None
    if len(words) == 2:
        direction = words[1]
    elif len(words) == 3:
        modifier, direction = words[1], words[2]
    valid = (
        len(words) in (1, 2, 3)
        and (verb in PRIMITIVES or (verb == TURN and direction is not None))
        and modifier in (None, *(m for m in MODIFIERS if m))
        and direction in (None, *DIRECTIONS)
    )
    if not valid:
        raise ValueError(
            f"{command!r} is not a SCAN command: {' '.join(words)!r} is not a verb phrase; use one of "
            f"{list(PRIMITIVES)} alone, or one of them or 'turn' followed by [opposite|around] left|right"
        )
    return _verb_phrase(verb, modifier, direction)


def _parse_sentence(words: list[str], command: str) -> Actions:
    """Actions of the S phrase `words` (a V phrase, optionally followed by twice or thrice)."""
    if words and words[-1] in REPEATS:
        return _parse_verb_phrase(words[:-1], command) * REPEATS[words[-1]]
    return _parse_verb_phrase(words, command)


def interpret(command: str) -> str:
    """Return the action sequence of a SCAN command, actions separated by single spaces.

    Args:
        command: Words separated by single spaces, e.g. "walk left twice and turn around right".

    Raises:
        ValueError: `command` is not generated by the SCAN grammar.
    """
    words = command.split(" ")
    joints = [i for i, w in enumerate(words) if w in CONJUNCTIONS]
    if len(joints) > 1:
        raise ValueError(
            f"{command!r} is not a SCAN command: it joins more than two phrases with {CONJUNCTIONS}; use at most one"
        )
    if not joints:
        return " ".join(_parse_sentence(words, command))
    i = joints[0]
    first, second = _parse_sentence(words[:i], command), _parse_sentence(words[i + 1 :], command)
    return " ".join(first + second if words[i] == "and" else second + first)


def _carve(indices: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Split `indices` at random into (rest, held out) with round(fraction * len) held out, both sorted."""
    held = rng.permutation(indices)[: round(fraction * len(indices))]
    rest = np.setdiff1d(indices, held)
    return rest.tolist(), np.sort(held).tolist()


def scan_splits(
    split: str = "simple", *, seed: int = 0, val_fraction: float = 0.05
) -> dict[str, list[tuple[str, str]]]:
    """Return the `train`, `valid` and `test` pairs of a SCAN split, each in grammar order.

    Args:
        split: "simple" (random 80/20 train/test by `seed`), "length" (train on at most 22 actions) or "add_jump"
            (train on every command without "jump" plus "jump" alone; test on every other command with "jump").
        seed: Seed of the random choices: the simple split's test set and every split's validation set.
        val_fraction: Share of the paper's training set moved to `valid`; 0 leaves `valid` empty.

    Raises:
        ValueError: Unknown `split`, or `val_fraction` outside [0, 1).
    """
    if split not in SCAN_SPLITS:
        raise ValueError(f"unknown SCAN split {split!r}; choose one of {list(SCAN_SPLITS)}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    pairs = _pairs()
    everything = np.arange(len(pairs))
    # Separate streams for the test and validation draws, so changing val_fraction keeps the simple test set.
    test_rng, val_rng = (np.random.default_rng([seed, k]) for k in range(2))
    if split == "simple":
        train, test = _carve(everything, SIMPLE_TEST_FRACTION, test_rng)
    elif split == "length":
        num_actions = np.array([len(actions.split(" ")) for _, actions in pairs])
        train = everything[num_actions <= LENGTH_MAX_TRAIN_ACTIONS].tolist()
        test = everything[num_actions > LENGTH_MAX_TRAIN_ACTIONS].tolist()
    else:
        has_jump = np.array(["jump" in command.split(" ") for command, _ in pairs])
        alone = [i for i, (command, _) in enumerate(pairs) if command == "jump"]
        train = everything[~has_jump].tolist()
        test = [i for i in everything[has_jump].tolist() if i not in alone]
    train, valid = _carve(np.array(train), val_fraction, val_rng)
    if split == "add_jump":
        # After the validation draw, which keeps one copy of each command.
        train = sorted(train + alone * round((len(train) + len(valid)) * ADD_JUMP_SHARE / (1 - ADD_JUMP_SHARE)))
    return {name: [pairs[i] for i in idx] for name, idx in zip(FILE_SPLITS, (train, valid, test))}


def _readme(split: str, settings: dict[str, object], parts: dict[str, list[tuple[str, str]]]) -> str:
    """The README.md written into the dataset folder."""
    if split == "simple":
        how = (
            f"`simple`: a random {SIMPLE_TEST_FRACTION:.0%} of all commands is the test set (drawn by `seed`), the "
            "rest is the paper's training set."
        )
    elif split == "add_jump":
        how = (
            '`add_jump`: the training set holds every command without "jump" and the command "jump" alone, '
            f'repeated to {ADD_JUMP_SHARE:.0%} of the set; the test set every other command with "jump".'
        )
    else:
        how = (
            f"`length`: the paper's training set holds every command of at most {LENGTH_MAX_TRAIN_ACTIONS} actions, "
            "the test set every longer one. `valid` is drawn from the short commands, so it selects models on "
            "in-distribution accuracy only."
        )
    counts = {name: len(p) for name, p in parts.items()}
    lines = [
        f"# SCAN, {split} split (mmattn built-in translation demo)",
        "",
        "Lake, B. M. and Baroni, M. (2018). Generalization without systematicity: On the compositional skills of",
        "sequence-to-sequence recurrent networks. ICML 2018.",
        "",
        "Generated by `mmattn/tasks/text/scan.py` (`make_scan`) from the paper's grammar and interpretation",
        f"function: all {sum(counts.values())} commands, none downloaded. Re-create it with the same settings to get",
        "the same bytes.",
        "",
        f"Files: line-aligned parallel text, one example a line: `<split>.{SOURCE_SUFFIX}` holds commands,",
        f"`<split>.{TARGET_SUFFIX}` their action sequences (words separated by single spaces), for the splits",
        f"{', '.join(FILE_SPLITS)}. Lines within a file follow the grammar order of `scan_pairs()`.",
        "",
        how,
        f"`valid` takes {settings['val_fraction']} of the paper's training set (drawn by `seed`) for model selection.",
        "",
        "Examples: "
        + ", ".join(f"{name} {n}" for name, n in counts.items())
        + f" (train + valid = {counts['train'] + counts['valid']}, the paper's training set).",
        "",
        "Settings:",
        "",
        *(f"- {k}: {v}" for k, v in settings.items()),
        "",
    ]
    return "\n".join(lines)


def generate_scan(out_dir: Path | str, *, split: str, seed: int, val_fraction: float) -> None:
    """Write one SCAN split into `out_dir` (not atomic; `make_scan` is)."""
    out_dir = Path(out_dir)
    parts = scan_splits(split, seed=seed, val_fraction=val_fraction)
    for name, pairs in parts.items():
        for suffix, column in ((SOURCE_SUFFIX, 0), (TARGET_SUFFIX, 1)):
            text = "".join(f"{pair[column]}\n" for pair in pairs)
            (out_dir / f"{name}.{suffix}").write_text(text, encoding="utf-8")
    settings = dict(split=split, seed=seed, val_fraction=val_fraction, generator_version=GENERATOR_VERSION)
    (out_dir / "README.md").write_text(_readme(split, settings, parts), encoding="utf-8")


def make_scan(root: Path | str, *, split: str = "simple", seed: int = 0, val_fraction: float = 0.05) -> Path:
    """Write a SCAN split once under `root/scan_<split>` (atomic, process-safe) and return that folder.

    The folder holds `train`, `valid` and `test` as line-aligned `<name>.cmd` (commands) and `<name>.act` (action
    sequences) files, plus a README.md with the counts.

    Args:
        root: Data directory; the dataset goes to `root/scan_<split>`.
        split: "simple" or "length"; see `scan_splits`.
        seed: Seed of the random test (simple split) and validation draws.
        val_fraction: Share of the paper's training set moved to `valid`.

    Raises:
        ValueError: Unknown `split`, `val_fraction` outside [0, 1), or the folder holds a dataset made with other
            settings.
    """
    if split not in SCAN_SPLITS:
        raise ValueError(f"unknown SCAN split {split!r}; choose one of {list(SCAN_SPLITS)}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    settings = dict(split=split, seed=int(seed), val_fraction=float(val_fraction))
    version = (
        f"{GENERATOR_VERSION} test_fraction={SIMPLE_TEST_FRACTION} max_train_actions={LENGTH_MAX_TRAIN_ACTIONS} "
        + " ".join(f"{k}={v}" for k, v in settings.items())
    )
    generate = partial(generate_scan, **settings)
    return ensure_dataset(Path(root) / f"scan_{split}", generate, name=f"scan_{split}", version=version)
