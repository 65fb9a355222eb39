"""Spectrogram features for the AST family: Kaldi-compatible log-mel filterbanks, log-mel spectrograms, SpecAugment.

Every module here works on a batch of waveforms [B, T] (or one waveform [T]) and returns [B, frames, mel_bins], the
layout of HF's `ASTFeatureExtractor`, so the same module runs per clip in loader workers or batched on the device.
"""

from __future__ import annotations

from typing import Literal

import torch
import torchaudio
from torch import Tensor, nn
from torchaudio.compliance import kaldi

__all__ = ["AST_MEAN", "AST_STD", "KaldiFbank", "LogMelSpectrogram", "AudioFeatures", "SpecAugment"]

# AudioSet statistics of Kaldi fbank features (128 bins, 16 kHz), the AST paper's and HF's defaults.
AST_MEAN = -4.2677393
AST_STD = 4.5689974


def _window(kind: str, size: int) -> Tensor:
    # Kaldi's windows are symmetric (periodic=False), unlike torch.stft's usual periodic Hann.
    if kind == "hanning":
        return torch.hann_window(size, periodic=False)
    if kind == "hamming":
        return torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46)
    if kind == "povey":
        return torch.hann_window(size, periodic=False).pow(0.85)
    raise ValueError(f"window {kind!r} is not supported; choose 'hanning', 'hamming' or 'povey'")


def frame_count(num_samples: int | Tensor, window: int, shift: int) -> int | Tensor:
    """Whole frames of `window` samples every `shift` samples in `num_samples` (elementwise for a tensor), at least 0.

    As a tensor formula it needs no Python loop over the batch, so models that use it stay traceable for export.
    """
    if isinstance(num_samples, Tensor):
        return (1 + torch.div(num_samples - window, shift, rounding_mode="floor")).clamp_min(0)
    return max(0, 1 + (num_samples - window) // shift)


class KaldiFbank(nn.Module):
    """Log-mel filterbank energies as Kaldi computes them (`compute-fbank-feats`, `torchaudio.compliance.kaldi.fbank`).

    Batched: frames every waveform of [B, T] at once, so it runs on the device for a whole batch; numbers equal
    `kaldi.fbank(w[None], dither=0.0, window_type=window, ...)` per clip. Frames follow Kaldi's `snip_edges`: a clip
    of T samples gives `1 + (T - frame_len) // frame_shift` frames.

    Args:
        sample_rate: Sampling rate of the input in Hz.
        num_mel_bins: Mel filters (AST: 128).
        frame_length_ms: Analysis window in milliseconds (25).
        frame_shift_ms: Hop in milliseconds (10).
        low_freq: Lowest filter edge in Hz.
        high_freq: Highest filter edge in Hz; <= 0 counts back from the Nyquist frequency (Kaldi's convention).
        preemphasis: Pre-emphasis coefficient applied per frame.
        window: "hanning" (AST), "hamming" or "povey" (Kaldi's default).

    Raises:
        ValueError: On a window shorter than 2 samples or an unknown window kind.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        num_mel_bins: int = 128,
        *,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        preemphasis: float = 0.97,
        window: Literal["hanning", "hamming", "povey"] = "hanning",
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.num_mel_bins = num_mel_bins
        self.frame_length = int(sample_rate * frame_length_ms * 0.001)
        self.frame_shift = int(sample_rate * frame_shift_ms * 0.001)
        if self.frame_length < 2 or self.frame_shift < 1:
            raise ValueError(
                f"frame_length_ms {frame_length_ms} / frame_shift_ms {frame_shift_ms} at {sample_rate} Hz give "
                f"{self.frame_length}/{self.frame_shift} samples; both must be at least a few samples"
            )
        self.n_fft = 1 << (self.frame_length - 1).bit_length()
        self.preemphasis = preemphasis
        banks, _ = kaldi.get_mel_banks(
            num_mel_bins, self.n_fft, float(sample_rate), float(low_freq), float(high_freq), 100.0, -500.0, 1.0
        )
        # get_mel_banks leaves out the Nyquist bin; a zero column makes it match rfft's n_fft // 2 + 1 bins.
        banks = torch.nn.functional.pad(banks, (0, 1))
        self.register_buffer("mel_banks", banks.T.contiguous(), persistent=False)  # [n_fft // 2 + 1, mel]
        self.register_buffer("window", _window(window, self.frame_length), persistent=False)

    def num_frames(self, num_samples: int | Tensor) -> int | Tensor:
        """Frames produced for clips of `num_samples` samples (an int or a tensor of them; 0 when shorter than one
        window)."""
        return frame_count(num_samples, self.frame_length, self.frame_shift)

    def forward(self, wave: Tensor) -> Tensor:
        """Log-mel energies [B, frames, num_mel_bins] of waveforms [B, T] (or [frames, num_mel_bins] for [T])."""
        single = wave.ndim == 1
        if single:
            wave = wave[None]
        if wave.shape[-1] < self.frame_length:
            raise ValueError(
                f"waveform of {wave.shape[-1]} samples is shorter than one {self.frame_length}-sample frame; "
                "pad clips to a fixed length first"
            )
        frames = wave.unfold(-1, self.frame_length, self.frame_shift)  # [b, f, w]
        frames = frames - frames.mean(dim=-1, keepdim=True)
        if self.preemphasis:
            # Kaldi's first sample is pre-emphasised against itself.
            previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
            frames = frames - self.preemphasis * previous
        power = torch.fft.rfft(frames * self.window.to(frames.dtype), n=self.n_fft).abs().pow(2)  # [b, f, n_fft/2+1]
        mel = power @ self.mel_banks.to(power.dtype)
        out = mel.clamp_min(torch.finfo(mel.dtype).eps).log()
        return out[0] if single else out


class LogMelSpectrogram(nn.Module):
    """log(MelSpectrogram + eps) through torchaudio (periodic Hann window, no centre padding, HTK mel scale).

    torch.stft frames span the whole FFT size, so a clip gives `1 + (T - n_fft) // frame_shift` frames, one or two
    fewer than `KaldiFbank`; with 128 bins at 16 kHz the lowest filters are narrower than an FFT bin (torchaudio
    warns about all-zero filters), so 64 bins suit this kind better.

    Args:
        sample_rate: Sampling rate of the input in Hz.
        num_mel_bins: Mel filters.
        frame_length_ms: Analysis window in milliseconds.
        frame_shift_ms: Hop in milliseconds.
        low_freq: Lowest mel frequency in Hz.
        high_freq: Highest mel frequency in Hz; <= 0 means the Nyquist frequency.
        eps: Floor added before the log.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        num_mel_bins: int = 128,
        *,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        win = int(sample_rate * frame_length_ms * 0.001)
        self.n_fft = 1 << (win - 1).bit_length()
        self.frame_shift = int(sample_rate * frame_shift_ms * 0.001)
        self.num_mel_bins = num_mel_bins
        self.eps = eps
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=self.n_fft,
            win_length=win,
            hop_length=self.frame_shift,
            f_min=low_freq,
            f_max=high_freq if high_freq > 0 else sample_rate / 2,
            n_mels=num_mel_bins,
            center=False,
            power=2.0,
        )

    def num_frames(self, num_samples: int | Tensor) -> int | Tensor:
        """Frames produced for clips of `num_samples` samples (an int or a tensor of them)."""
        return frame_count(num_samples, self.n_fft, self.frame_shift)

    def forward(self, wave: Tensor) -> Tensor:
        """Log-mel power [B, frames, num_mel_bins] of waveforms [B, T] (or [frames, num_mel_bins] for [T])."""
        return (self.mel(wave) + self.eps).log().transpose(-1, -2)


class AudioFeatures(nn.Module):
    """Waveforms -> normalised features [B, target_length, mel_bins], the AST input (HF `ASTFeatureExtractor` layout).

    Frames beyond `target_length` are cut and missing ones are zero-padded before normalisation, and the
    normalisation is AST's `(x - mean) / (2 * std)` (features of std 0.5), so `kind="fbank"` with the defaults equals
    `ASTFeatureExtractor` output. Compute a dataset's own mean/std with `scripts/audio_stats.py`.

    Args:
        kind: "fbank" (Kaldi-compatible, AST) or "melspec" (torchaudio MelSpectrogram, natural log).
        sample_rate: Sampling rate of the input in Hz.
        num_mel_bins: Mel filters.
        target_length: Frames per example; None keeps the natural count of the clip.
        mean: Feature mean (AudioSet fbank mean by default).
        std: Feature std (AudioSet fbank std by default).
        frame_length_ms: Analysis window in milliseconds.
        frame_shift_ms: Hop in milliseconds.
        low_freq: Lowest filter frequency in Hz.
        high_freq: Highest filter frequency in Hz; <= 0 counts back from Nyquist.

    Raises:
        ValueError: On an unknown `kind`, a non-positive `std` or `target_length`.
    """

    def __init__(
        self,
        kind: Literal["fbank", "melspec"] = "fbank",
        *,
        sample_rate: int = 16000,
        num_mel_bins: int = 128,
        target_length: int | None = 1024,
        mean: float = AST_MEAN,
        std: float = AST_STD,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
    ) -> None:
        super().__init__()
        common = dict(frame_length_ms=frame_length_ms, frame_shift_ms=frame_shift_ms, low_freq=low_freq)
        if kind == "fbank":
            self.extract: KaldiFbank | LogMelSpectrogram = KaldiFbank(
                sample_rate, num_mel_bins, high_freq=high_freq, **common
            )
        elif kind == "melspec":
            self.extract = LogMelSpectrogram(sample_rate, num_mel_bins, high_freq=high_freq, **common)
        else:
            raise ValueError(f"feature kind {kind!r} is not supported; choose 'fbank' or 'melspec'")
        if std <= 0:
            raise ValueError(f"feature std must be > 0, got {std}; run scripts/audio_stats.py to measure it")
        if target_length is not None and target_length < 1:
            raise ValueError(f"target_length must be >= 1 frame (or null), got {target_length}")
        self.kind = kind
        self.sample_rate = sample_rate
        self.num_mel_bins = num_mel_bins
        self.target_length = target_length
        self.mean = float(mean)
        self.std = float(std)

    def num_frames(self, num_samples: int) -> int:
        """Output frames for clips of `num_samples` samples."""
        return self.target_length if self.target_length is not None else self.extract.num_frames(num_samples)

    def raw(self, wave: Tensor) -> Tensor:
        """Un-normalised features [B, frames, mel_bins], padded or cut to `target_length`."""
        feats = self.extract(wave)
        if self.target_length is not None:
            missing = self.target_length - feats.shape[-2]
            if missing > 0:
                feats = torch.nn.functional.pad(feats, (0, 0, 0, missing))
            elif missing < 0:
                feats = feats[..., : self.target_length, :]
        return feats

    def forward(self, wave: Tensor) -> Tensor:
        """Normalised features [B, frames, mel_bins] of waveforms [B, T] (or [frames, mel_bins] for [T])."""
        return (self.raw(wave) - self.mean) / (2 * self.std)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, target_length={self.target_length}, mean={self.mean:.4f}, std={self.std:.4f}"


class SpecAugment(nn.Module):
    """SpecAugment (Park et al., 2019) with torchaudio's masks on features [B, frames, mel_bins]; training only.

    Each example gets its own masks (`iid_masks`); masked values become 0, the feature mean after normalisation.

    Args:
        freq_mask_param: Widest frequency mask in bins (0 disables; AST uses 48 of 128 on AudioSet).
        time_mask_param: Widest time mask in frames (0 disables; AST uses 192 of 1024).
        num_freq_masks: Frequency masks per example.
        num_time_masks: Time masks per example.
    """

    def __init__(
        self, freq_mask_param: int = 0, time_mask_param: int = 0, *, num_freq_masks: int = 1, num_time_masks: int = 1
    ) -> None:
        super().__init__()
        if min(freq_mask_param, time_mask_param, num_freq_masks, num_time_masks) < 0:
            raise ValueError("SpecAugment mask widths and counts must be >= 0")
        masks: list[nn.Module] = []
        if freq_mask_param:
            masks += [torchaudio.transforms.FrequencyMasking(freq_mask_param, iid_masks=True)] * num_freq_masks
        if time_mask_param:
            masks += [torchaudio.transforms.TimeMasking(time_mask_param, iid_masks=True)] * num_time_masks
        self.masks = nn.ModuleList(masks)

    def forward(self, feats: Tensor) -> Tensor:
        """Masked copy of feats [B, frames, mel] (or [frames, mel]) in training mode; the input itself otherwise."""
        if not self.training or not len(self.masks):
            return feats
        single = feats.ndim == 2
        x = feats.transpose(-1, -2)[None] if single else feats.transpose(-1, -2)  # torchaudio wants [.., freq, time]
        x = x.unsqueeze(1)  # [b, 1, freq, time]: iid masks need a channel dim
        for mask in self.masks:
            x = mask(x)
        x = x.squeeze(1).transpose(-1, -2)
        return x[0] if single else x
