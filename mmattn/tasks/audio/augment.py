"""Waveform augmentation applied per clip in the loader: random gain, time shift, background-noise mixing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["WaveAugment", "mix_at_snr"]


def mix_at_snr(signal: Tensor, noise: Tensor, snr_db: float) -> Tensor:
    """signal + noise scaled so that power(signal) / power(noise) = snr_db; silent signals get the noise unscaled."""
    signal_power = signal.pow(2).mean()
    noise_power = noise.pow(2).mean().clamp_min(1e-12)
    if signal_power <= 0:
        return signal + noise
    scale = torch.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return signal + scale * noise


class WaveAugment:
    """Random gain, time shift and background-noise mixing of one waveform [T] (a picklable loader transform).

    Randomness comes from torch's global generator, which Lightning seeds per loader worker.

    Args:
        gain_db: (low, high) gain in dB drawn per clip; None disables.
        max_shift: Largest time shift as a fraction of the clip, in either direction; the gap is zero-filled.
        noise_files: Long background recordings (e.g. Speech Commands' `_background_noise_/`), as files or as the
            bytes of such files (read from shards); decoded lazily, once per worker process.
        noise_prob: Probability of mixing a random crop of one noise file into a clip.
        snr_db: (low, high) signal-to-noise ratio in dB of that mix.
        sample_rate: Rate the noise files are resampled to.

    Raises:
        ValueError: On reversed ranges or a probability outside [0, 1].
    """

    def __init__(
        self,
        *,
        gain_db: Sequence[float] | None = (-6.0, 6.0),
        max_shift: float = 0.0,
        noise_files: Sequence[str | Path | bytes] = (),
        noise_prob: float = 0.0,
        snr_db: Sequence[float] = (5.0, 20.0),
        sample_rate: int = 16000,
    ) -> None:
        for name, rng in (("gain_db", gain_db), ("snr_db", snr_db)):
            if rng is not None and (len(rng) != 2 or rng[0] > rng[1]):
                raise ValueError(f"{name} must be (low, high) with low <= high, got {tuple(rng)}")
        if not 0 <= noise_prob <= 1:
            raise ValueError(f"noise_prob must be in [0, 1], got {noise_prob}")
        if not 0 <= max_shift < 1:
            raise ValueError(f"max_shift must be a fraction of the clip in [0, 1), got {max_shift}")
        if noise_prob > 0 and not noise_files:
            raise ValueError("noise_prob > 0 needs noise_files (the dataset has no background-noise recordings)")
        self.gain_db = None if gain_db is None else (float(gain_db[0]), float(gain_db[1]))
        self.max_shift = float(max_shift)
        self.noise_files = [p if isinstance(p, bytes) else Path(p) for p in noise_files]
        self.noise_prob = float(noise_prob)
        self.snr_db = (float(snr_db[0]), float(snr_db[1]))
        self.sample_rate = sample_rate
        self._noise: list[Tensor] | None = None

    def __getstate__(self) -> dict:
        # Worker processes read the noise themselves instead of receiving megabytes of pickled tensors.
        return {**self.__dict__, "_noise": None}

    def _noises(self) -> list[Tensor]:
        if self._noise is None:
            from .io import decode_audio, read_audio

            waves = (
                decode_audio(p, self.sample_rate, name=f"background noise recording {i}")
                if isinstance(p, bytes)
                else read_audio(p, self.sample_rate)
                for i, p in enumerate(self.noise_files)
            )
            self._noise = [w for w in waves if w.numel()]
        return self._noise

    @staticmethod
    def _uniform(low: float, high: float) -> float:
        return low + (high - low) * torch.rand(()).item()

    def __call__(self, wave: Tensor) -> Tensor:
        """An augmented copy of wave [T]."""
        n = wave.shape[-1]
        if self.max_shift > 0 and n > 1:
            limit = int(self.max_shift * n)
            shift = int(torch.randint(-limit, limit + 1, ()).item()) if limit else 0
            if shift:
                wave = torch.roll(wave, shift, dims=-1)
                if shift > 0:
                    wave[..., :shift] = 0
                else:
                    wave[..., shift:] = 0
        if self.noise_prob > 0 and torch.rand(()).item() < self.noise_prob:
            noises = self._noises()
            if noises:
                noise = noises[int(torch.randint(len(noises), ()).item())]
                if noise.shape[-1] < n:
                    noise = noise.repeat(math.ceil(n / noise.shape[-1]))
                start = int(torch.randint(noise.shape[-1] - n + 1, ()).item())
                wave = mix_at_snr(wave, noise[start : start + n], self._uniform(*self.snr_db))
        if self.gain_db is not None:
            wave = wave * 10 ** (self._uniform(*self.gain_db) / 20)
        return wave
