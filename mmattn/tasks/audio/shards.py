"""The audio task's shard records: clips written as their files' bytes (windows of long recordings as float WAVs of
the window), decoded back by `AudioRecordDecoder` with the same decoder, cropping and transforms as `AudioClipDataset`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from mmattn.data.shards import FileSource, Record, RecordSource
from mmattn.data.skipping import BadFile

from .data import Clip, clip_item
from .io import decode_audio, encode_wav, read_audio

__all__ = ["AudioRecordDecoder", "AudioWindowSource", "clip_sources"]


@dataclass(frozen=True)
class AudioWindowSource(RecordSource):
    """A window of a long recording (a `_silence_` clip cut from background noise), stored as the window alone: a
    32-bit float WAV of its samples at `sample_rate`, which decodes to the very samples `read_audio` cut."""

    key: str
    label: int
    path: str
    offset: int
    num_samples: int
    sample_rate: int

    def read(self) -> bytes:
        """The window's samples as a float WAV file."""
        wave = read_audio(self.path, self.sample_rate, offset=self.offset, num_samples=self.num_samples)
        return encode_wav(wave, self.sample_rate)


def clip_sources(clips: Sequence[Clip], root: Path, *, sample_rate: int, num_samples: int) -> list[RecordSource]:
    """Clips as shard sources keyed by their path under `root`: whole files as they are, windows cut out
    (`<path>@<offset>`)."""
    out: list[RecordSource] = []
    for clip in clips:
        key = Path(os.path.relpath(clip.path, root)).as_posix()
        if clip.offset is None:
            out.append(FileSource(key, clip.label, str(clip.path)))
        else:
            window = (clip.offset, num_samples, sample_rate)
            out.append(AudioWindowSource(f"{key}@{clip.offset}", clip.label, str(clip.path), *window))
    return out


class AudioRecordDecoder:
    """A shard record -> `(waveform or features, label)` (or a `BadFile`): `AudioClipDataset`'s decoder, cropping
    and transform, for one split.

    Args:
        sample_rate: Rate to decode at.
        num_samples: Length of every returned waveform (before `transform`).
        train: Random (True) or centred (False) cropping and padding.
        transform: Applied after cropping, e.g. augmentation and features.
        skip_bad_files: A `BadFile` instead of `AudioDecodeError` for a record that cannot be decoded.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        num_samples: int,
        train: bool,
        transform: Callable[[Tensor], Tensor] | None = None,
        skip_bad_files: bool = False,
    ) -> None:
        self.sample_rate = sample_rate
        self.num_samples = num_samples
        self.train = train
        self.transform = transform
        self.skip_bad_files = skip_bad_files

    def __call__(self, record: Record) -> tuple[Tensor, int] | BadFile:
        """Decode, crop and transform one record."""
        return clip_item(
            lambda: decode_audio(record.data, self.sample_rate, name=record.name),
            record.label,
            record.name,
            num_samples=self.num_samples,
            train=self.train,
            transform=self.transform,
            skip_bad_files=self.skip_bad_files,
        )
