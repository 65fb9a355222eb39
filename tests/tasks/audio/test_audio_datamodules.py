"""Audio datamodules end to end on real files: DTMF demo, Speech Commands layout, ESC-50, audio folder; augmentation."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmattn.tasks.audio import (
    AST_MEAN,
    AST_STD,
    AudioFeatures,
    AudioFolderDataModule,
    DTMFDataModule,
    ESC50DataModule,
    SpeechCommandsDataModule,
)
from mmattn.tasks.audio.augment import WaveAugment, mix_at_snr
from mmattn.tasks.audio.io import read_audio

TINY = dict(train_per_class=3, val_per_class=2, test_per_class=1, batch_size=8, num_workers=0, target_length=100)


@pytest.fixture(scope="module")
def dtmf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audio-data")
    DTMFDataModule(root, **TINY).prepare_data()
    return root


def test_dtmf_batches_are_ast_features(dtmf_dir: Path) -> None:
    dm = DTMFDataModule(dtmf_dir, **TINY)
    dm.setup()
    assert dm.num_classes == 17 and dm.classes[:3] == ["0", "1", "2"] and len(dm.noise_files) == 5
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (51, 34, 17)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 100, 128) and x.dtype == torch.float32 and y.dtype == torch.long
    assert torch.isfinite(x).all()
    assert len(list(dm.train_dataloader())) == 51 // 8  # drop_last in training
    assert sum(len(b[1]) for b in dm.val_dataloader()) == 34


def test_features_on_device_equal_features_in_the_loader(dtmf_dir: Path) -> None:
    loader_side = DTMFDataModule(dtmf_dir, **TINY)
    device_side = DTMFDataModule(dtmf_dir, features_on="device", **TINY)
    for dm in (loader_side, device_side):
        dm.setup()
    waves, labels = next(iter(device_side.val_dataloader()))
    assert waves.shape == (8, 16000)  # the loader only reads on this path
    feats, labels2 = device_side.on_after_batch_transfer((waves, labels), 0)
    ref, ref_labels = next(iter(loader_side.val_dataloader()))
    assert torch.equal(labels2, ref_labels)
    torch.testing.assert_close(feats, ref, atol=1e-5, rtol=0)


def test_spec_augment_runs_on_training_batches_only(dtmf_dir: Path) -> None:
    dm = DTMFDataModule(dtmf_dir, freq_mask=30, time_mask=20, **TINY)
    dm.setup()
    torch.manual_seed(0)
    x, _ = next(iter(dm.train_dataloader()))
    masked_rows = (x == 0).all(dim=1).any(dim=1)  # some whole frequency band zeroed per example
    assert masked_rows.float().mean() > 0.5
    v, _ = next(iter(dm.val_dataloader()))
    assert not (v == 0).all(dim=1).any()


def test_feature_stats_measure_the_unnormalised_training_features(dtmf_dir: Path) -> None:
    dm = DTMFDataModule(dtmf_dir, **TINY)
    mean, std = dm.feature_stats()
    dm.setup()
    feats = AudioFeatures(target_length=100)
    raw = torch.stack([feats.raw(read_audio(c.path, 16000)) for c in dm.train_set.clips]).double()
    assert mean == pytest.approx(raw.mean().item(), abs=1e-4)
    assert std == pytest.approx(raw.std(unbiased=False).item(), abs=1e-4)
    assert dm.feature_stats(max_clips=17) != (mean, std)  # a cap reads fewer clips


def test_dtmf_is_read_as_speech_commands(dtmf_dir: Path) -> None:
    dm = SpeechCommandsDataModule(dtmf_dir / "dtmf", num_classes=17, batch_size=4, num_workers=0)
    dm.setup()
    assert dm.classes[-1] == "star" and len(dm.train_set) == 51
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 98, 128)  # target_length None: the clip's natural 98 frames
    with pytest.raises(FileNotFoundError, match="data.download=true"):
        SpeechCommandsDataModule(dtmf_dir / "missing", num_workers=0).setup()


def test_datamodule_errors_name_the_option(dtmf_dir: Path) -> None:
    with pytest.raises(ValueError, match="num_classes is 10 but the data has 17 classes"):
        DTMFDataModule(dtmf_dir, **{**TINY, "num_classes": 10}).setup()
    with pytest.raises(ValueError, match="features_on must be 'loader' or 'device'"):
        DTMFDataModule(dtmf_dir, features_on="gpu", **TINY)
    with pytest.raises(ValueError, match=r"gain_db must be \(low, high\)"):
        DTMFDataModule(dtmf_dir, gain_db=(6, -6), **TINY)
    with pytest.raises(ValueError, match="shorter than one feature frame"):
        DTMFDataModule(dtmf_dir, clip_seconds=0.01, **TINY)
    folder = dtmf_dir / "dtmf"
    with pytest.raises(ValueError, match="noise_prob > 0 but this dataset has no background-noise files"):
        AudioFolderDataModule(folder, noise_prob=0.5, num_workers=0).setup()


def _esc50(root: Path) -> Path:
    rows = []
    for fold in range(1, 6):
        for target, category in enumerate(["dog", "rain", "siren"]):
            name = f"{fold}-{100 + target}-A-{target}.wav"
            t = np.arange(44100 * 5) / 44100
            wave = 0.3 * np.sin(2 * math.pi * (300 + 400 * target) * t)
            (root / "audio").mkdir(parents=True, exist_ok=True)
            sf.write(root / "audio" / name, wave, 44100, subtype="PCM_16")
            rows.append([name, fold, target, category, False, f"{100 + target}", "A"])
    (root / "meta").mkdir(parents=True, exist_ok=True)
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        csv.writer(f).writerows([["filename", "fold", "target", "category", "esc10", "src_file", "take"], *rows])
    return root


def test_esc50_datamodule_resamples_5_s_clips(tmp_path: Path) -> None:
    dm = ESC50DataModule(_esc50(tmp_path / "ESC-50-master"), num_classes=3, batch_size=3, num_workers=0)
    dm.setup()
    assert dm.classes == ["dog", "rain", "siren"]
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (9, 3, 3)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (3, 498, 128) and y.tolist() == [0, 1, 2]  # 5 s at 16 kHz: 498 frames
    # Higher tone, higher mel bin: the 44.1 kHz files were resampled, not misread.
    peaks = x.mean(dim=1).argmax(dim=-1)
    assert peaks[0] < peaks[1] < peaks[2]


def test_audio_folder_datamodule_with_noise_mixing(tmp_path: Path, dtmf_dir: Path) -> None:
    root = tmp_path / "clips"
    for c, name in enumerate(["low", "high"]):
        for i in range(6):
            t = np.arange(8000) / 8000
            (root / name).mkdir(parents=True, exist_ok=True)
            sf.write(root / name / f"{i}.flac", 0.2 * np.sin(2 * math.pi * (500 + 1000 * c) * t), 8000)
    dm = AudioFolderDataModule(
        root,
        noise_dir=dtmf_dir / "dtmf" / "_background_noise_",
        noise_prob=1.0,
        snr_db=(0.0, 5.0),
        batch_size=4,
        num_workers=0,
    )
    dm.setup()
    assert dm.classes == ["high", "low"] and len(dm.noise_files) == 5
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 98, 128)


def test_mix_at_snr_hits_the_ratio() -> None:
    g = torch.Generator().manual_seed(0)
    signal, noise = torch.randn(16000, generator=g), 3 * torch.randn(16000, generator=g)
    for snr in (0.0, 10.0, 20.0):
        added = mix_at_snr(signal, noise, snr) - signal
        assert 10 * math.log10(signal.pow(2).mean() / added.pow(2).mean()) == pytest.approx(snr, abs=1e-3)
    silent = torch.zeros(100)
    torch.testing.assert_close(mix_at_snr(silent, noise[:100], 10.0), noise[:100])


def test_wave_augment_gain_shift_and_noise(dtmf_dir: Path) -> None:
    torch.manual_seed(0)
    wave = torch.sin(torch.arange(16000) * 0.1)
    gains = [WaveAugment(gain_db=(-6, 6))(wave).abs().max().item() for _ in range(50)]
    assert 10 ** (-6 / 20) - 1e-4 <= min(gains) < 0.8 < 1.25 < max(gains) <= 10 ** (6 / 20) + 1e-4
    shifted = WaveAugment(gain_db=None, max_shift=0.2)(wave)
    zeros = int((shifted == 0).sum())
    assert 0 < zeros <= 3201 and shifted.abs().sum() > 0
    noise_files = sorted((dtmf_dir / "dtmf" / "_background_noise_").glob("*.wav"))
    aug = WaveAugment(gain_db=None, noise_files=noise_files, noise_prob=1.0, snr_db=(10, 10))
    added = aug(wave) - wave
    assert 10 * math.log10(wave.pow(2).mean() / added.pow(2).mean()) == pytest.approx(10, abs=1e-3)
    assert aug.__getstate__()["_noise"] is None  # workers read the noise themselves
    with pytest.raises(ValueError, match="noise_prob > 0 needs noise_files"):
        WaveAugment(noise_prob=0.5)


def test_ast_defaults_are_hf_values() -> None:
    assert (AST_MEAN, AST_STD) == (-4.2677393, 4.5689974)


def test_empty_and_silent_clips_are_padded_not_crashed_on(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        sf.write(root / name / "empty.wav", np.zeros((0,), np.int16), 16000, subtype="PCM_16")
        sf.write(root / name / "silent.wav", np.zeros(8000), 16000, subtype="PCM_16")
        sf.write(root / name / "short.wav", 0.1 * np.ones(100), 16000, subtype="PCM_16")
    dm = AudioFolderDataModule(root, val_fraction=0.4, batch_size=8, num_workers=0, drop_last=False)
    dm.setup()
    batches = [*dm.train_dataloader(), *dm.val_dataloader()]
    assert sum(len(y) for _, y in batches) == 6
    assert all(x.shape[1:] == (98, 128) and torch.isfinite(x).all() for x, _ in batches)
