"""Features against their references: torchaudio's Kaldi fbank, HF's ASTFeatureExtractor (both of its code paths)."""

import math

import numpy as np
import pytest
import torch
from torchaudio.compliance import kaldi

from mmattn.tasks.audio.features import AST_MEAN, AST_STD, AudioFeatures, KaldiFbank, LogMelSpectrogram, SpecAugment


def _waves(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    tones = torch.sin(2 * math.pi * 440 * t) * 0.3
    return tones + 0.05 * torch.randn(batch, samples, generator=g)


@pytest.mark.parametrize("window", ["hanning", "hamming", "povey"])
@pytest.mark.parametrize(("sample_rate", "samples", "bins"), [(16000, 16000, 128), (8000, 5123, 40)])
def test_kaldi_fbank_matches_torchaudio_per_clip(window, sample_rate, samples, bins):
    waves = _waves(3, samples)
    ours = KaldiFbank(sample_rate, bins, window=window)(waves)
    assert ours.shape == (3, ours.shape[1], bins) and ours.shape[1] == KaldiFbank(sample_rate, bins).num_frames(samples)
    for i in range(3):
        ref = kaldi.fbank(
            waves[i : i + 1],
            sample_frequency=sample_rate,
            num_mel_bins=bins,
            window_type=window,
            dither=0.0,
            frame_shift=10,
            frame_length=25,
        )
        torch.testing.assert_close(ours[i], ref, atol=1e-4, rtol=0)


def test_fbank_single_waveform_and_short_input():
    fbank = KaldiFbank()
    wave = _waves(1, 4000)[0]
    assert fbank(wave).shape == (fbank.num_frames(4000), 128)
    with pytest.raises(ValueError, match="shorter than one 400-sample frame"):
        fbank(torch.zeros(2, 399))


def _hf_extractor(numpy_path: bool, monkeypatch):
    from transformers.models.audio_spectrogram_transformer import feature_extraction_audio_spectrogram_transformer as fe

    if numpy_path:
        # HF's own numpy implementation (used when torchaudio is absent): an independent reference.
        monkeypatch.setattr(fe, "is_speech_available", lambda: False)
    return fe.ASTFeatureExtractor()


@pytest.mark.parametrize("numpy_path", [False, True], ids=["hf-torchaudio", "hf-numpy"])
@pytest.mark.parametrize("samples", [16000, 16000 * 11])
def test_audio_features_match_hf_ast_feature_extractor(numpy_path, samples, monkeypatch):
    extractor = _hf_extractor(numpy_path, monkeypatch)
    waves = _waves(2, samples, seed=1)
    ref = extractor([w.numpy() for w in waves], sampling_rate=16000, return_tensors="pt")["input_values"]
    ours = AudioFeatures("fbank", target_length=1024)(waves)
    assert ours.shape == ref.shape == (2, 1024, 128)
    # 1 s is padded (zeros before normalisation), 11 s is cut at 1024 frames: both like HF.
    torch.testing.assert_close(ours, ref.float(), atol=1e-4, rtol=0)


def test_audio_features_normalisation_and_lengths():
    waves = _waves(2, 16000)
    feats = AudioFeatures(target_length=None)
    raw = feats.raw(waves)
    assert raw.shape == (2, 98, 128) and feats.num_frames(16000) == 98
    torch.testing.assert_close(feats(waves), (raw - AST_MEAN) / (2 * AST_STD))
    padded = AudioFeatures(target_length=100)(waves)
    assert padded.shape == (2, 100, 128)
    # Padding is zero before normalisation, as in AST and HF.
    torch.testing.assert_close(padded[:, 98:], torch.full((2, 2, 128), -AST_MEAN / (2 * AST_STD)))


def test_log_mel_spectrogram_peak_and_frames():
    sr, f0 = 16000, 1000.0
    wave = torch.sin(2 * math.pi * f0 * torch.arange(sr) / sr)[None]
    mel = LogMelSpectrogram(sr, 64)
    out = mel(wave)
    assert out.shape == (1, mel.num_frames(sr), 64)
    # The strongest bin is the filter centred nearest 1 kHz on the HTK mel scale.
    mels = np.linspace(2595 * np.log10(1 + 20 / 700), 2595 * np.log10(1 + 8000 / 700), 66)
    centres = 700 * (10 ** (mels[1:-1] / 2595) - 1)
    assert abs(int(out[0].mean(0).argmax()) - int(np.abs(centres - f0).argmin())) <= 1


def test_feature_options_are_checked():
    with pytest.raises(ValueError, match="feature kind 'mfcc'"):
        AudioFeatures("mfcc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="std must be > 0"):
        AudioFeatures(std=0.0)
    with pytest.raises(ValueError, match="window 'rect'"):
        KaldiFbank(window="rect")  # type: ignore[arg-type]


def test_spec_augment_masks_bands_per_example_in_training_only():
    torch.manual_seed(0)
    feats = torch.randn(16, 100, 64) + 5.0
    aug = SpecAugment(freq_mask_param=20, time_mask_param=30)
    out = aug(feats)
    zero = out == 0
    freq_masked = zero.all(dim=1)  # [b, mel]: whole frequency rows
    time_masked = zero.all(dim=2)  # [b, frames]: whole time columns
    for b in range(16):
        for mask, limit in ((freq_masked[b], 20), (time_masked[b], 30)):
            idx = mask.nonzero().flatten()
            if idx.numel():
                assert idx.numel() <= limit and idx.max() - idx.min() + 1 == idx.numel()  # one contiguous band
        assert (zero[b] == (freq_masked[b][None, :] | time_masked[b][:, None])).all()
    assert len({tuple(freq_masked[b].nonzero().flatten().tolist()) for b in range(16)}) > 1  # iid masks
    assert aug.eval()(feats) is feats
    assert SpecAugment().train()(feats) is feats
