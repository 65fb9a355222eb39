"""Speech corpora as lists of utterances: JSON-lines manifests (NeMo style) and the LibriSpeech folder layout.

Pure data reading: an `Utterance` names its audio file, duration and transcript; decoding the audio is the
loader's job. Every error names the file and line at fault and says how to fix it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

__all__ = [
    "AUDIO_KEYS",
    "LIBRISPEECH_SUBSETS",
    "Utterance",
    "keep_short",
    "read_librispeech",
    "read_manifest",
    "write_manifest",
]

# "audio_filepath" is NeMo's name for the key; ours comes first and is the one `write_manifest` writes.
AUDIO_KEYS = ("audio", "audio_filepath")
MANIFEST_EXAMPLE = '{"audio": "clips/a.flac", "duration": 2.5, "text": "hello world"}'
LIBRISPEECH_SUBSETS = (
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
)
LIBRISPEECH_URL = "https://www.openslr.org/resources/12"


@dataclass(frozen=True)
class Utterance:
    """One utterance of a corpus.

    Args:
        id: Unique name, e.g. LibriSpeech's "103-1240-0000", a manifest line's "id", or else the audio file stem.
        path: Absolute path of the audio file.
        duration: Length of the audio in seconds.
        text: Transcript as written in the corpus (not normalised).
    """

    id: str
    path: Path
    duration: float
    text: str


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_manifest_line(line: str, where: str, folder: Path) -> Utterance:
    """The utterance of one non-blank manifest line; `where` is "<manifest>:<line>" for the messages."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{where}: invalid JSON ({e.msg} at column {e.colno}); each line must be one JSON object such as "
            f"{MANIFEST_EXAMPLE}"
        ) from e
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a JSON object such as {MANIFEST_EXAMPLE}, got {type(entry).__name__}")
    audio_key = next((k for k in AUDIO_KEYS if k in entry), None)
    missing = (["audio"] if audio_key is None else []) + [k for k in ("duration", "text") if k not in entry]
    if missing:
        raise ValueError(
            f"{where}: missing key {', '.join(repr(k) for k in missing)}; the line has keys {sorted(entry)}, but "
            f"each line needs 'audio' (or NeMo's 'audio_filepath'), 'duration' (seconds) and 'text'"
        )
    raw_audio, duration, text = entry[audio_key], entry["duration"], entry["text"]
    if not isinstance(raw_audio, str) or not raw_audio:
        raise ValueError(f"{where}: {audio_key!r} must be a non-empty path string, got {raw_audio!r}")
    if not _is_number(duration) or not math.isfinite(duration) or duration < 0:
        raise ValueError(
            f"{where}: 'duration' must be a number of seconds >= 0, got {duration!r}; write it as a JSON number, "
            "e.g. 2.5, not a string"
        )
    if not isinstance(text, str):
        raise ValueError(f"{where}: 'text' must be a string, got {text!r}")
    path = Path(os.path.abspath(folder / raw_audio))  # abspath, not resolve: keep symlinked data folders as named
    utt_id = entry.get("id", path.stem)
    if not isinstance(utt_id, (str, int)) or isinstance(utt_id, bool) or utt_id == "":
        raise ValueError(f"{where}: 'id' must be a non-empty string, got {utt_id!r}")
    return Utterance(id=str(utt_id), path=path, duration=float(duration), text=text)


def _check_kept(utterances: list, dropped: int, source: Path, max_duration: float | None) -> None:
    """Raise when nothing is left of `source`: an empty corpus is a configuration error, not an empty epoch."""
    if utterances:
        return
    if dropped:
        raise ValueError(
            f"all {dropped} utterances of {source} are longer than max_duration={max_duration} s; raise "
            "max_duration or set it to None"
        )
    raise ValueError(f"{source} lists no utterances; check that it is the right file and not truncated")


def keep_short(utterances: list[Utterance], max_duration: float | None, source: Path | str) -> list[int]:
    """Indices of the utterances at most `max_duration` seconds long (all when it is None), in order.

    Raises:
        ValueError: None is left (`source` names where they were read from).
    """
    kept = [i for i, u in enumerate(utterances) if max_duration is None or u.duration <= max_duration]
    _check_kept(kept, len(utterances) - len(kept), Path(source), max_duration)
    return kept


def read_manifest(
    path: Path | str, *, max_duration: float | None = None, check_files: bool = True
) -> tuple[list[Utterance], int]:
    """Read a JSON-lines manifest into utterances in file order, and count the clips dropped as too long.

    Each non-blank line is one object with keys "audio" (or NeMo's "audio_filepath"), "duration" (seconds) and
    "text", and optionally "id" (default: the audio file's stem); other keys are ignored. A relative audio path is
    relative to the manifest's folder.

    Args:
        path: The manifest file.
        max_duration: Drop utterances longer than this many seconds (None keeps all).
        check_files: Check that every listed audio file exists (one `stat` per line).

    Returns:
        The kept utterances and the number dropped by `max_duration`.

    Raises:
        FileNotFoundError: The manifest, or (with `check_files`) a listed audio file, does not exist.
        ValueError: A line is not a JSON object with the keys above, a duration is not a number >= 0, an id
            repeats, or no utterance is left.
    """
    path = Path(os.path.abspath(path))
    if max_duration is not None and max_duration <= 0:
        raise ValueError(f"max_duration must be > 0 seconds or None, got {max_duration}")
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist; check the path or (re)generate the manifest")
    utterances: list[Utterance] = []
    first_line: dict[str, int] = {}
    dropped = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            utt = _parse_manifest_line(line, where, path.parent)
            if check_files and not utt.path.is_file():
                raise FileNotFoundError(
                    f"{where}: audio file {utt.path} does not exist (relative paths are relative to the manifest's "
                    f"folder {path.parent}); fix the path on line {lineno} or restore the file"
                )
            if utt.id in first_line:
                raise ValueError(
                    f"{where}: id {utt.id!r} repeats line {first_line[utt.id]}; give each line a unique 'id' "
                    "(without one, the audio file stem is the id)"
                )
            first_line[utt.id] = lineno
            if max_duration is not None and utt.duration > max_duration:
                dropped += 1
                continue
            utterances.append(utt)
    _check_kept(utterances, dropped, path, max_duration)
    return utterances, dropped


def write_manifest(path: Path | str, utterances: Iterable[Utterance]) -> Path:
    """Write `utterances` as a JSON-lines manifest that `read_manifest` reads back, atomically; return its path.

    Audio paths under the manifest's folder are written relative to it (so the folder can move), others absolute.
    The file appears complete or not at all: it is written to a temporary file beside it, then renamed.

    Raises:
        ValueError: `utterances` is empty (`read_manifest` would reject the file).
    """
    path = Path(os.path.abspath(path))
    folder = path.parent
    lines = []
    for utt in utterances:
        audio = Path(os.path.abspath(utt.path))
        try:
            audio_str = audio.relative_to(folder).as_posix()
        except ValueError:
            audio_str = str(audio)
        entry = {"id": utt.id, "audio": audio_str, "duration": utt.duration, "text": utt.text}
        lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
    if not lines:
        raise ValueError(f"no utterances to write to manifest {path}; read_manifest rejects an empty manifest")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _has_transcripts(folder: Path) -> bool:
    return next(folder.glob("*/*/*.trans.txt"), None) is not None


def _found_subsets(root: Path) -> list[str]:
    """Folders directly under `root` or `root/LibriSpeech` that hold LibriSpeech transcripts."""
    found = set()
    for base in (root, root / "LibriSpeech"):
        if base.is_dir():
            found.update(p.name for p in base.iterdir() if p.is_dir() and _has_transcripts(p))
    return sorted(found)


def _read_transcripts(trans: Path) -> list[Utterance]:
    """The utterances of one `<speaker>-<chapter>.trans.txt` file, with durations read from the FLAC headers."""
    prefix = trans.name.removesuffix(".trans.txt")
    utterances = []
    for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{trans}:{lineno}"
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2 or parts[0].rpartition("-")[0] != prefix:
            raise ValueError(
                f"{where}: malformed transcript line {line.strip()[:80]!r}; expected '{prefix}-<nnnn> TRANSCRIPT' "
                "(utterance id of this chapter, a space, the text); re-extract the archive if the file is damaged"
            )
        utt_id, text = parts
        flac = trans.parent / f"{utt_id}.flac"
        if not flac.is_file():
            raise FileNotFoundError(
                f"audio file {flac} is missing (listed in {where}); re-extract the subset's archive, or remove "
                "that line if the file was dropped on purpose"
            )
        try:
            duration = sf.info(str(flac)).duration
        except (sf.SoundFileError, RuntimeError) as e:
            raise ValueError(f"cannot read the header of {flac} (listed in {where}): {e}") from e
        utterances.append(Utterance(id=utt_id, path=Path(os.path.abspath(flac)), duration=duration, text=text))
    return utterances


def read_librispeech(
    root: Path | str, subset: str, *, max_duration: float | None = None
) -> tuple[list[Utterance], int]:
    """Read a LibriSpeech subset into utterances sorted by id, and count the clips dropped as too long.

    The layout is `root/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`, one line
    `<speaker>-<chapter>-<nnnn> TRANSCRIPT` per utterance, beside `<speaker>-<chapter>-<nnnn>.flac`. When
    `root/LibriSpeech/<subset>` exists (where the openslr tarballs unpack to), that one is read instead.
    Durations come from the FLAC headers.

    Args:
        root: Folder holding the subset folders (or the `LibriSpeech/` folder of the unpacked tarballs).
        subset: Subset name, e.g. "train-clean-100" or "dev-clean".
        max_duration: Drop utterances longer than this many seconds (None keeps all).

    Returns:
        The kept utterances and the number dropped by `max_duration`.

    Raises:
        FileNotFoundError: The subset folder, or a FLAC file a transcript lists, does not exist.
        ValueError: A transcript line is malformed, a FLAC header is unreadable, or no utterance is left.
    """
    root = Path(os.path.abspath(root))
    if max_duration is not None and max_duration <= 0:
        raise ValueError(f"max_duration must be > 0 seconds or None, got {max_duration}")
    base = root / "LibriSpeech" if (root / "LibriSpeech" / subset).is_dir() else root
    folder = base / subset
    if not folder.is_dir():
        found = _found_subsets(root)
        hint = f"subsets found under {root}: {', '.join(found)}" if found else f"no subsets found under {root}"
        raise FileNotFoundError(
            f"LibriSpeech subset folder {folder} does not exist ({hint}); check `subset`, or download "
            f"{LIBRISPEECH_URL}/{subset}.tar.gz and unpack it into {root}"
        )
    transcripts = sorted(folder.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise ValueError(
            f"{folder} holds no <speaker>/<chapter>/<speaker>-<chapter>.trans.txt files; is it a LibriSpeech "
            "subset folder? Re-extract the archive"
        )
    utterances = sorted((u for trans in transcripts for u in _read_transcripts(trans)), key=lambda u: u.id)
    kept = keep_short(utterances, max_duration, folder)
    return [utterances[i] for i in kept], len(utterances) - len(kept)
