"""Reading audio files as mono float waveforms at a fixed sample rate, and fitting them to a fixed length.

Files are read with soundfile (libsndfile) only: torchaudio's own loader needs torchcodec, which we do not depend on.
"""

from __future__ import annotations

import functools
import io
import math
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import Tensor
from torchaudio.transforms import Resample

# The containers libsndfile decodes reliably on every platform; mp3 support depends on how libsndfile was built.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
FIX_LENGTH_MODES = ("random", "center", "start")


# torchaudio's polyphase kernel has (new / g) x (orig / g) taps for g = gcd(orig, new): 44.1k -> 16k is 160 x 441, but
# an odd rate such as 44101 Hz would need a 16000 x 44101 kernel (2.8 GB). Beyond this many taps we refuse.
MAX_RESAMPLE_TAPS = 1 << 24


def _check_resample(path: Path | str, orig_rate: int, new_rate: int) -> None:
    g = math.gcd(orig_rate, new_rate)
    if (orig_rate // g) * (new_rate // g) > MAX_RESAMPLE_TAPS:
        raise AudioDecodeError(
            f"cannot resample audio file {path} from {orig_rate} Hz to {new_rate} Hz (their ratio "
            f"{orig_rate // g}:{new_rate // g} needs a huge filter); convert it first, e.g. "
            f"`sox {path} -r {new_rate} out.wav`"
        )


@functools.lru_cache(maxsize=8)
def resampler(orig_rate: int, new_rate: int) -> Resample:
    """A torchaudio `Resample` from `orig_rate` to `new_rate` Hz, cached: callers share it, so none may alter it."""
    # The module precomputes its sinc kernel once; the functional form rebuilds it for every clip.
    return Resample(orig_rate, new_rate)


class AudioDecodeError(ValueError):
    """An audio file that soundfile cannot decode; the message names the file and libsndfile's error."""


def read_audio(path: Path | str, sample_rate: int, *, offset: int = 0, num_samples: int | None = None) -> Tensor:
    """Read an audio file as a float32 mono waveform [T] in [-1, 1] at `sample_rate`.

    Channels are averaged into one; a file at another rate is resampled with torchaudio's `Resample`
    (whose band-limited interpolation may overshoot full scale by a hair; nothing is clamped).
    A file without samples gives an empty tensor (callers pad it, e.g. with `fix_length`).

    Args:
        path: Audio file in a format libsndfile reads (see `AUDIO_EXTENSIONS`).
        sample_rate: Sample rate of the returned waveform, in Hz.
        offset: First sample to return, counted at `sample_rate`.
        num_samples: Return at most this many samples from `offset` (None = up to the end). With `offset` this
            reads only that window from a file already at `sample_rate`, e.g. one second of a long noise recording.

    Raises:
        ValueError: `sample_rate` <= 0, `offset` < 0 or `num_samples` < 0.
        FileNotFoundError: `path` does not exist.
        AudioDecodeError: soundfile cannot decode `path`, or its rate cannot be resampled to `sample_rate`.
    """
    return _decode(path, path, sample_rate, offset, num_samples)


def decode_audio(
    data: bytes, sample_rate: int, *, name: str | Path, offset: int = 0, num_samples: int | None = None
) -> Tensor:
    """Encoded audio bytes (a WAV, FLAC or OGG file's content) as `read_audio` reads that file; errors name `name`.

    Raises:
        ValueError: `sample_rate` <= 0, `offset` < 0 or `num_samples` < 0.
        AudioDecodeError: soundfile cannot decode the bytes, or their rate cannot be resampled to `sample_rate`.
    """
    return _decode(io.BytesIO(data), name, sample_rate, offset, num_samples)


def _decode(
    source: Path | str | BinaryIO, name: Path | str, sample_rate: int, offset: int, num_samples: int | None
) -> Tensor:
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0 Hz, got {sample_rate}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0 samples, got {offset}")
    if num_samples is not None and num_samples < 0:
        raise ValueError(f"num_samples must be >= 0 or None, got {num_samples}")
    try:
        with sf.SoundFile(source) as f:
            file_rate = f.samplerate
            if file_rate == sample_rate and f.seekable():
                # Same rate: seek, so a one-second window of a long recording costs one second of decoding.
                f.seek(min(offset, f.frames))
                data = f.read(-1 if num_samples is None else num_samples, dtype="float32", always_2d=True)
                offset, num_samples = 0, None
            else:
                data = f.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as e:
        if isinstance(source, (str, Path)) and not os.path.exists(source):
            raise FileNotFoundError(f"audio file {name} does not exist; check the dataset folder") from e
        raise AudioDecodeError(f"cannot decode audio file {name}: {e}") from e

    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1, dtype=np.float32)))
    if file_rate != sample_rate and wave.numel() > 0:
        _check_resample(name, file_rate, sample_rate)
        with torch.no_grad():
            wave = resampler(file_rate, sample_rate)(wave)
    return wave[offset : None if num_samples is None else offset + num_samples]


def encode_wav(wave: Tensor, sample_rate: int) -> bytes:
    """A mono float32 waveform as the bytes of a 32-bit float WAV file: `decode_audio` gives back the same samples."""
    out = io.BytesIO()
    sf.write(out, wave.numpy(), sample_rate, format="WAV", subtype="FLOAT")
    return out.getvalue()


def fix_length(wave: Tensor, length: int, mode: str = "center", generator: torch.Generator | None = None) -> Tensor:
    """Crop or zero-pad `wave` along its last dim to exactly `length` samples.

    Args:
        wave: Waveform [..., T].
        length: Number of samples to return.
        mode: Where the kept window or the short clip sits: "random" (random crop offset, or random placement of a
            short clip inside the zero pad; for training), "center" (centred; for evaluation) or "start" (keep the
            start, pad at the end).
        generator: Random source of mode "random" (None = torch's global RNG).

    Returns:
        Waveform [..., length]; a crop is a view of `wave`.

    Raises:
        ValueError: Unknown `mode`, or `length` < 0.
    """
    if mode not in FIX_LENGTH_MODES:
        raise ValueError(f"unknown fix_length mode {mode!r}; choose one of {list(FIX_LENGTH_MODES)}")
    if length < 0:
        raise ValueError(f"length must be >= 0 samples, got {length}")
    n = wave.shape[-1]
    if n == length:
        return wave
    slack = abs(n - length)
    if mode == "random":
        start = int(torch.randint(0, slack + 1, (1,), generator=generator))
    elif mode == "center":
        start = slack // 2
    else:
        start = 0
    if n > length:
        return wave[..., start : start + length]
    return F.pad(wave, (start, slack - start))
