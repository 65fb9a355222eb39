"""The speech source adapter: waveforms -> log-mel features (the audio adapter's) -> convolutional subsampling ->
encoder tokens, with the padding mask `EncoderDecoder` expects from a `source` module.

The features are computed inside the model, batched on its device, so a checkpoint transcribes raw audio with nothing
but the sample rate to match, and training and `mmattn-transcribe` cannot disagree about them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmattn.modality import FileReader, InputEmbedding, Renderer, TokenLayout, Tokens
from mmattn.nn import SinusoidalPositionalEncoding
from mmattn.tasks.audio.features import AST_MEAN, AST_STD, AudioFeatures, SpecAugment
from mmattn.tasks.audio.io import AUDIO_EXTENSIONS, read_audio
from mmattn.viz.heat import overlay_heat

__all__ = ["AudioFileReader", "ConvSubsampling", "SpeechFrontEnd", "WaveformRenderer", "collate_audio"]

SUBSAMPLING_FACTORS = (1, 2, 4, 8)


def collate_audio(waves: Sequence[Tensor]) -> dict[str, Tensor]:
    """Zero-pad waveforms [T_i] into the front end's input `{"audio": [B, T], "audio_lengths": [B]}`."""
    lengths = torch.tensor([w.shape[-1] for w in waves], dtype=torch.long)
    audio = torch.zeros(len(waves), int(lengths.max()) if len(waves) else 0)
    for row, wave in zip(audio, waves):
        row[: wave.shape[-1]] = wave
    return {"audio": audio, "audio_lengths": lengths}


class AudioFileReader:
    """Reads audio files as mono waveforms at one sample rate and batches them as the speech front end's input."""

    extensions = AUDIO_EXTENSIONS
    # NeMo's manifest key too.
    manifest_keys = ("audio", "audio_filepath")

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate

    def read_file(self, path: str | Path) -> Tensor:
        """A file's mono waveform [T] at `sample_rate`."""
        return read_audio(path, self.sample_rate)

    def collate(self, waves: Sequence[Tensor]) -> dict[str, Tensor]:
        """`collate_audio`."""
        return collate_audio(waves)


class WaveformRenderer:
    """Draws a waveform [T] over time, the token heat as a band over the time each encoder token covers."""

    def draw(
        self, ax: Any, example: Tensor, heat: Tensor | None, layout: TokenLayout, *, tokenizer: Any = None
    ) -> None:
        """Waveform on `ax`, with `heat` [tokens] behind it when given."""
        wave = example.detach().float().cpu().numpy()
        peak = max(float(abs(wave).max()), 1e-6)
        if heat is not None:
            overlay_heat(ax, heat, layout, (0, len(wave), -peak, peak), origin="lower", alpha=0.4)
        ax.plot(wave, lw=0.5, color="black")
        ax.set_xlim(0, len(wave))
        ax.set_xlabel("sample", fontsize=8)


class ConvSubsampling(nn.Module):
    """Features [B, T, F] -> [B, T / factor, dim] by 3x3 convolutions of stride 2 over time and frequency.

    Each stride-2 layer halves the frame rate (10 ms frames become 40 ms tokens at factor 4), as speech encoders do
    to bring a second of audio from 100 frames to a sequence length attention handles cheaply. Factor 1 is a linear
    projection per frame.

    Args:
        num_mel_bins: Feature bins F.
        dim: Output width.
        factor: 1, 2, 4 or 8 (log2(factor) conv layers).
        channels: Channels of every conv layer (default `dim`).

    Raises:
        ValueError: Another factor, or too few bins for the convolutions.
    """

    def __init__(self, num_mel_bins: int, dim: int, *, factor: int = 4, channels: int | None = None) -> None:
        super().__init__()
        if factor not in SUBSAMPLING_FACTORS:
            raise ValueError(f"subsampling factor must be one of {list(SUBSAMPLING_FACTORS)}, got {factor}")
        self.factor = factor
        self.num_layers = int(math.log2(factor))
        channels = channels or dim
        freq = num_mel_bins
        layers: list[nn.Module] = []
        for i in range(self.num_layers):
            layers += [nn.Conv2d(1 if i == 0 else channels, channels, kernel_size=3, stride=2), nn.ReLU()]
            freq = (freq - 1) // 2
        if freq < 1:
            raise ValueError(f"{num_mel_bins} mel bins are too few for subsampling factor {factor}; use more bins")
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Linear(channels * freq if self.num_layers else num_mel_bins, dim)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Valid output frames for `lengths` valid input frames (each unpadded conv of stride 2: (n - 1) // 2)."""
        for _ in range(self.num_layers):
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor").clamp_min(0)
        return lengths

    def forward(self, feats: Tensor) -> Tensor:
        """Subsampled tokens [B, T', dim] of features [B, T, F]."""
        if not self.num_layers:
            return self.proj(feats)
        x = self.conv(feats[:, None])  # [B, C, T', F']
        b, c, t, f = x.shape
        return self.proj(x.permute(0, 2, 1, 3).reshape(b, t, c * f))


class SpeechFrontEnd(InputEmbedding):
    """Input embedding for speech (the modality contract): `{"audio": [B, T] waveforms, "audio_lengths": [B]
    samples}` -> tokens [B, S, dim], padding mask [B, S] (True = padding) or None, a sequence layout.

    Features are `mmattn.tasks.audio.AudioFeatures` (Kaldi fbank or log-mel at 10 ms hops) at their natural length,
    normalised globally (`mean`/`std`, AST's convention) or per utterance over its valid frames and bins (robust to
    recording level; the default), SpecAugment-masked in training, zeroed beyond each clip's end, then subsampled by
    `ConvSubsampling`, scaled by sqrt(dim) and given sinusoidal positions (or none, for an encoder with rotary ones).

    Args:
        dim: Encoder width.
        sample_rate: Rate of the input waveforms in Hz (`mmattn-transcribe` resamples files to it).
        num_mel_bins: Mel filters.
        features: "fbank" (Kaldi-compatible) or "melspec".
        normalize: "utterance" or "global".
        mean: Global feature mean (with `normalize="global"`).
        std: Global feature std (with `normalize="global"`).
        subsampling: Frame-rate reduction, 1, 2, 4 or 8.
        channels: Conv channels (default `dim`).
        freq_mask: Widest SpecAugment frequency mask in bins (0 = off).
        time_mask: Widest SpecAugment time mask in frames (0 = off).
        num_freq_masks: Frequency masks per utterance.
        num_time_masks: Time masks per utterance.
        positions: "sinusoidal" or "none".
        dropout: Dropout on the tokens.

    Raises:
        ValueError: An unknown option, or a batch without the two keys.
    """

    modality = "speech"
    # Its tokens carry sinusoidal positions (or none, for an encoder with rotary ones): families add none.
    positioned = True

    def __init__(
        self,
        dim: int,
        *,
        sample_rate: int = 16000,
        num_mel_bins: int = 80,
        features: Literal["fbank", "melspec"] = "fbank",
        normalize: Literal["utterance", "global"] = "utterance",
        mean: float = AST_MEAN,
        std: float = AST_STD,
        subsampling: int = 4,
        channels: int | None = None,
        freq_mask: int = 0,
        time_mask: int = 0,
        num_freq_masks: int = 2,
        num_time_masks: int = 2,
        positions: Literal["sinusoidal", "none"] = "sinusoidal",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if normalize not in ("utterance", "global"):
            raise ValueError(f"normalize must be 'utterance' or 'global', got {normalize!r}")
        if positions not in ("sinusoidal", "none"):
            raise ValueError(f"positions must be 'sinusoidal' or 'none' (rotary is the encoder's), got {positions!r}")
        self.sample_rate = sample_rate
        self.dim = dim
        self.normalize = normalize
        self.features = AudioFeatures(
            features, sample_rate=sample_rate, num_mel_bins=num_mel_bins, target_length=None, mean=mean, std=std
        )
        self.spec_augment = SpecAugment(
            freq_mask, time_mask, num_freq_masks=num_freq_masks, num_time_masks=num_time_masks
        )
        self.subsample = ConvSubsampling(num_mel_bins, dim, factor=subsampling, channels=channels)
        self.scale = math.sqrt(dim)
        self.positions = SinusoidalPositionalEncoding(dim) if positions == "sinusoidal" else None
        self.dropout = nn.Dropout(dropout)

    @property
    def layout(self) -> TokenLayout:
        """A sequence of encoder tokens (one second of audio as the example length)."""
        return TokenLayout.sequence(self.num_frames(self.sample_rate))

    def reader(self) -> FileReader:
        """Audio files at this front end's sample rate."""
        return AudioFileReader(self.sample_rate)

    def renderer(self) -> Renderer:
        """Draws the waveform under the heat."""
        return WaveformRenderer()

    def example_input(self, batch_size: int) -> dict[str, Tensor]:
        """One second of random audio per row."""
        return collate_audio([torch.randn(self.sample_rate) * 0.1 for _ in range(batch_size)])

    def padded_tokens(self, x: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """`tokens_and_mask`."""
        return self.tokens_and_mask(x)

    def export_example(self, batch_size: int, size: int) -> dict[str, Tensor]:
        """`size` tenths of a second of random audio per row, the first row shorter (padded)."""
        lengths = torch.full((batch_size,), size * self.sample_rate // 10, dtype=torch.long)
        lengths[0] = lengths[0] * 3 // 4
        return {"audio": torch.randn(batch_size, size * self.sample_rate // 10) * 0.1, "audio_lengths": lengths}

    def export_axes(self) -> dict[str, dict[int, str]]:
        """Batch and samples of the audio, batch of the lengths."""
        return {"audio": {0: "batch", 1: "samples"}, "audio_lengths": {0: "batch"}}

    def batch_size(self, x: Mapping[str, Tensor]) -> int:
        """Rows of the waveform batch."""
        return int(x["audio"].shape[0])

    def select(self, x: Mapping[str, Tensor], k: int) -> dict[str, Tensor]:
        """The first k waveforms, still batched."""
        return {name: value[:k] for name, value in x.items()}

    def examples(self, x: Mapping[str, Tensor], k: int) -> list[Tensor]:
        """The first k waveforms, each cut to its length."""
        return [wave[: int(n)] for wave, n in zip(x["audio"][:k], x["audio_lengths"][:k])]

    def num_frames(self, num_samples: int) -> int:
        """Encoder tokens of a clip of `num_samples` samples."""
        frames = torch.tensor([self.features.extract.num_frames(num_samples)])
        return int(self.subsample.output_lengths(frames)[0])

    def _features(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised features [B, F, bins] with zeros beyond each clip, and the valid frame counts [B]."""
        extract = self.features.extract
        # A batch shorter than one analysis window has no frame; pad it to one (its rows stay fully masked).
        window = getattr(extract, "frame_length", None) or extract.n_fft  # Kaldi frames span the window, stft n_fft
        short = window - audio.shape[-1]
        if short > 0:
            audio = torch.nn.functional.pad(audio, (0, short))
        # Spectra in fp32 whatever the autocast: log-mel of bf16 samples loses the quiet bins.
        with torch.autocast(audio.device.type, enabled=False):
            raw = self.features.raw(audio.float())
        frames = extract.num_frames(lengths.to(raw.device))
        valid = torch.arange(raw.shape[1], device=raw.device)[None, :] < frames[:, None]  # [B, F]
        if self.normalize == "global":
            feats = (raw - self.features.mean) / (2 * self.features.std)
        else:
            weight = valid[..., None].to(raw.dtype)
            count = (frames.clamp_min(1) * raw.shape[-1]).to(raw.dtype)[:, None, None]
            mean = (raw * weight).sum(dim=(1, 2), keepdim=True) / count
            var = ((raw - mean).pow(2) * weight).sum(dim=(1, 2), keepdim=True) / count
            feats = (raw - mean) / var.clamp_min(1e-5).sqrt()
        feats = self.spec_augment(feats)
        return feats * valid[..., None], frames

    def embed(self, src: Mapping[str, Tensor]) -> Tokens:
        """Encoder tokens [B, S, dim] and their padding mask [B, S] (None when no row is padded), a sequence."""
        x, mask = self.tokens_and_mask(src)
        return Tokens(x, mask if bool(mask.any()) else None, TokenLayout.sequence(x.shape[1]))

    def tokens_and_mask(self, src: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Encoder tokens [B, S, dim] and their padding mask [B, S], always a tensor (no data-dependent branch, so
        it exports)."""
        if not isinstance(src, Mapping) or "audio" not in src or "audio_lengths" not in src:
            got = sorted(src) if isinstance(src, Mapping) else type(src).__name__
            raise ValueError(f"SpeechFrontEnd takes {{'audio': [B, T], 'audio_lengths': [B]}}, got {got}")
        audio, lengths = src["audio"], src["audio_lengths"].to(src["audio"].device)
        if audio.ndim != 2 or lengths.shape != audio.shape[:1]:
            raise ValueError(
                f"audio must be [batch, samples] with audio_lengths [batch], got {tuple(audio.shape)} and "
                f"{tuple(lengths.shape)}"
            )
        feats, frames = self._features(audio, lengths)
        x = self.subsample(feats.to(self.subsample.proj.weight.dtype)) * self.scale
        if self.positions is not None:
            x = self.positions(x)
        tokens = self.subsample.output_lengths(frames)
        mask = torch.arange(x.shape[1], device=x.device)[None, :] >= tokens[:, None]
        return self.dropout(x), mask
