"""Speech corpora: JSON-lines manifests and the LibriSpeech layout, read from real files in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmattn.tasks.speech.corpus import Utterance, read_librispeech, read_manifest, write_manifest

SR = 16000
# speaker -> chapter -> [(utterance number, seconds, transcript)]
LIBRI = {
    "103": {"1240": [(0, 0.5, "CHAPTER ONE"), (1, 1.25, "MISSUS RACHEL LYNDE LIVED")]},
    "19": {
        "198": [(0, 0.75, "NORTHANGER ABBEY"), (2, 2.0, "NO ONE WHO HAD EVER SEEN CATHERINE")],
        "227": [(5, 0.25, "IT WAS A LONG TIME")],
    },
}


def _write_flac(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * SR)) / SR)
    sf.write(path, tone, SR, subtype="PCM_16", format="FLAC")


def _librispeech(root: Path, subset: str = "dev-clean") -> Path:
    for speaker, chapters in LIBRI.items():
        for chapter, utts in chapters.items():
            folder = root / subset / speaker / chapter
            for n, seconds, _ in utts:
                _write_flac(folder / f"{speaker}-{chapter}-{n:04d}.flac", seconds)
            lines = "".join(f"{speaker}-{chapter}-{n:04d} {text}\n" for n, _, text in utts)
            (folder / f"{speaker}-{chapter}.trans.txt").write_text(lines)
    return root


def _manifest(path: Path, entries: list[dict | str]) -> Path:
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in entries))
    return path


def test_librispeech_ids_texts_durations(tmp_path: Path) -> None:
    utts, dropped = read_librispeech(_librispeech(tmp_path), "dev-clean")
    assert dropped == 0
    expected = sorted(
        (f"{s}-{c}-{n:04d}", seconds, text)
        for s, chs in LIBRI.items()
        for c, us in chs.items()
        for n, seconds, text in us
    )
    assert [(u.id, u.duration, u.text) for u in utts] == expected
    first = utts[0]
    assert first.id == "103-1240-0000" and first.path == tmp_path / "dev-clean/103/1240/103-1240-0000.flac"
    assert all(u.path.is_absolute() and u.path.is_file() for u in utts)


def test_librispeech_tarball_layout_and_max_duration(tmp_path: Path) -> None:
    # The openslr tarballs unpack to LibriSpeech/<subset>; the root above it works too.
    _librispeech(tmp_path / "LibriSpeech", "test-other")
    utts, dropped = read_librispeech(tmp_path, "test-other", max_duration=1.0)
    assert dropped == 2 and all(u.duration <= 1.0 for u in utts) and len(utts) == 3
    with pytest.raises(ValueError, match=r"all 5 utterances .* longer than max_duration=0.1"):
        read_librispeech(tmp_path, "test-other", max_duration=0.1)


def test_librispeech_missing_subset_lists_the_found_ones(tmp_path: Path) -> None:
    _librispeech(tmp_path, "dev-clean")
    _librispeech(tmp_path / "LibriSpeech", "test-clean")
    (tmp_path / "notes").mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"dev-other does not exist \(subsets found under .*: dev-clean, test-clean\)"
    ):
        read_librispeech(tmp_path, "dev-other")
    with pytest.raises(FileNotFoundError, match="no subsets found"):
        read_librispeech(tmp_path / "notes", "dev-clean")


def test_librispeech_missing_flac_names_flac_and_transcript_line(tmp_path: Path) -> None:
    _librispeech(tmp_path)
    (tmp_path / "dev-clean/19/198/19-198-0002.flac").unlink()
    trans = tmp_path / "dev-clean/19/198/19-198.trans.txt"
    with pytest.raises(FileNotFoundError, match=rf"19-198-0002\.flac is missing \(listed in {trans}:2\)"):
        read_librispeech(tmp_path, "dev-clean")


@pytest.mark.parametrize("line", ["19-198-0003", "19-227-0003 WRONG CHAPTER"])
def test_librispeech_malformed_line(tmp_path: Path, line: str) -> None:
    _librispeech(tmp_path)
    trans = tmp_path / "dev-clean/19/198/19-198.trans.txt"
    trans.write_text(trans.read_text() + line + "\n")
    with pytest.raises(ValueError, match=rf"{trans}:3: malformed transcript line"):
        read_librispeech(tmp_path, "dev-clean")


def test_manifest_round_trip_relative_paths(tmp_path: Path) -> None:
    _write_flac(tmp_path / "clips/a.flac", 0.5)
    _write_flac(tmp_path / "elsewhere/b.flac", 0.25)
    utts = [
        Utterance("a", tmp_path / "clips/a.flac", 0.5, "Hello, World!"),
        Utterance("b-1", tmp_path / "elsewhere/b.flac", 0.25, "zwölf"),
    ]
    manifest = write_manifest(tmp_path / "data/train.jsonl", utts[:1])
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert entries == [{"id": "a", "audio": str(tmp_path / "clips/a.flac"), "duration": 0.5, "text": "Hello, World!"}]

    manifest = write_manifest(tmp_path / "train.jsonl", utts)
    assert [json.loads(line)["audio"] for line in manifest.read_text().splitlines()] == [
        "clips/a.flac",
        "elsewhere/b.flac",
    ]
    assert "zwölf" in manifest.read_text(encoding="utf-8")  # not \u escaped
    assert read_manifest(manifest) == (utts, 0)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # the temp file was renamed
    # Relative paths: the folder can move.
    moved = tmp_path.rename(tmp_path.with_name(tmp_path.name + "-moved"))
    assert read_manifest(moved / "train.jsonl")[0][0].path == moved / "clips/a.flac"


def test_manifest_nemo_key_default_id_blank_lines_max_duration(tmp_path: Path) -> None:
    for name, seconds in (("x.flac", 0.5), ("y.flac", 3.0), ("z.flac", 1.0)):
        _write_flac(tmp_path / name, seconds)
    manifest = _manifest(
        tmp_path / "m.jsonl",
        [
            {"audio_filepath": "x.flac", "duration": 0.5, "text": "a", "lang": "en"},
            "",
            {"audio": str(tmp_path / "y.flac"), "duration": 3.0, "text": "b"},
            "   ",
            {"audio": "z.flac", "duration": 1, "text": "c", "id": 7},
        ],
    )
    utts, dropped = read_manifest(manifest, max_duration=2.0)
    assert dropped == 1
    assert [(u.id, u.path, u.duration, u.text) for u in utts] == [
        ("x", tmp_path / "x.flac", 0.5, "a"),
        ("7", tmp_path / "z.flac", 1.0, "c"),
    ]
    with pytest.raises(ValueError, match=r"all 3 utterances of .*m\.jsonl are longer than max_duration=0.1"):
        read_manifest(manifest, max_duration=0.1)


def test_manifest_missing_audio_names_file_and_line(tmp_path: Path) -> None:
    _write_flac(tmp_path / "a.flac", 0.5)
    good = {"audio": "a.flac", "duration": 0.5, "text": "a"}
    manifest = _manifest(tmp_path / "m.jsonl", [good, "", {"audio": "sub/gone.flac", "duration": 1.0, "text": "b"}])
    with pytest.raises(FileNotFoundError, match=rf"m\.jsonl:3: audio file {tmp_path / 'sub/gone.flac'} does not exist"):
        read_manifest(manifest)
    # Without the check the line is read as it is.
    assert read_manifest(manifest, check_files=False)[0][1].path == tmp_path / "sub/gone.flac"


@pytest.mark.parametrize(
    ("line", "error", "match"),
    [
        ('{"audio": "a.flac", "duration": 1.0, "text": "a"', ValueError, r"m\.jsonl:2: invalid JSON"),
        ('["a.flac", 1.0, "a"]', ValueError, r"m\.jsonl:2: expected a JSON object"),
        (
            '{"path": "a.flac", "text": "a"}',
            ValueError,
            r"m\.jsonl:2: missing key 'audio', 'duration'; the line has keys \['path', 'text'\]",
        ),
        ('{"audio": "a.flac", "duration": "1.5", "text": "a"}', ValueError, r"m\.jsonl:2: 'duration' must be a number"),
        ('{"audio": "a.flac", "duration": -1, "text": "a"}', ValueError, r"m\.jsonl:2: 'duration' must be a number"),
        ('{"audio": "a.flac", "duration": 1, "text": null}', ValueError, r"m\.jsonl:2: 'text' must be a string"),
        ('{"audio": "a.flac", "duration": 1, "text": "b"}', ValueError, r"m\.jsonl:2: id 'a' repeats line 1"),
    ],
)
def test_manifest_bad_lines_name_the_line(tmp_path: Path, line: str, error: type, match: str) -> None:
    _write_flac(tmp_path / "a.flac", 1.0)
    manifest = _manifest(tmp_path / "m.jsonl", [{"audio": "a.flac", "duration": 1.0, "text": "a"}, line])
    with pytest.raises(error, match=match):
        read_manifest(manifest)


def test_manifest_empty_or_missing(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(ValueError, match=r"empty\.jsonl lists no utterances"):
        read_manifest(manifest)
    with pytest.raises(FileNotFoundError, match=r"manifest .*nope\.jsonl does not exist"):
        read_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="no utterances to write"):
        write_manifest(tmp_path / "out.jsonl", [])
    assert not (tmp_path / "out.jsonl").exists()
