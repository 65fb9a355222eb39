"""Audio reading (mixdown, resampling, formats, errors, windows) and fixing waveforms to a length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmattn.tasks.audio.io import AUDIO_EXTENSIONS, AudioDecodeError, fix_length, read_audio, resampler


def _sine(freq: float, sample_rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(sample_rate * seconds)) / sample_rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def _peak_hz(wave: torch.Tensor, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave.numpy() * np.hanning(wave.numel())))
    return float(np.fft.rfftfreq(wave.numel(), 1 / sample_rate)[spectrum.argmax()])


def test_reads_mono_float32(tmp_path: Path) -> None:
    x = _sine(440, 16000, 0.25)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="PCM_16")
    wave = read_audio(tmp_path / "a.wav", 16000)
    assert wave.dtype == torch.float32 and wave.shape == (4000,)
    np.testing.assert_allclose(wave.numpy(), x, atol=1 / 32767)


def test_stereo_is_averaged_into_mono(tmp_path: Path) -> None:
    left = _sine(440, 16000, 0.1)
    stereo = np.stack([left, np.full_like(left, 0.25)], axis=1)
    sf.write(tmp_path / "st.wav", stereo, 16000, subtype="PCM_16")
    wave = read_audio(str(tmp_path / "st.wav"), 16000)
    assert wave.shape == (1600,)
    np.testing.assert_allclose(wave.numpy(), (left + 0.25) / 2, atol=1e-4)


def test_resampling_8k_to_16k_keeps_the_frequency(tmp_path: Path) -> None:
    sf.write(tmp_path / "low.wav", _sine(1000, 8000, 1.0), 8000, subtype="PCM_16")
    wave = read_audio(tmp_path / "low.wav", 16000)
    assert wave.shape == (16000,)
    assert abs(_peak_hz(wave, 16000) - 1000) <= 1
    assert 0.45 < wave.abs().max() < 0.55, "resampling keeps the amplitude"


@pytest.mark.parametrize("ext", AUDIO_EXTENSIONS)
def test_every_listed_container_reads(tmp_path: Path, ext: str) -> None:
    x = _sine(700, 16000, 0.5)
    sf.write(tmp_path / f"a{ext}", x, 16000)
    wave = read_audio(tmp_path / f"a{ext}", 16000)
    assert wave.shape == (8000,)
    if ext == ".ogg":  # lossy: the tone survives, the samples do not
        assert abs(_peak_hz(wave, 16000) - 700) <= 2
    else:
        np.testing.assert_allclose(wave.numpy(), x, atol=1e-4)


def test_empty_file_gives_empty_tensor(tmp_path: Path) -> None:
    sf.write(tmp_path / "empty.wav", np.zeros((0, 2), np.int16), 8000, subtype="PCM_16")
    for rate in (8000, 16000):
        wave = read_audio(tmp_path / "empty.wav", rate)
        assert wave.shape == (0,) and wave.dtype == torch.float32


def test_undecodable_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_text("not audio at all")
    with pytest.raises(AudioDecodeError, match=r"cannot decode audio file .*bad\.wav: .*Format not recognised"):
        read_audio(tmp_path / "bad.wav", 16000)
    assert issubclass(AudioDecodeError, ValueError)
    with pytest.raises(FileNotFoundError, match=r"audio file .*nope\.wav does not exist"):
        read_audio(tmp_path / "nope.wav", 16000)
    with pytest.raises(ValueError, match="sample_rate must be > 0 Hz, got 0"):
        read_audio(tmp_path / "bad.wav", 0)


def test_rate_that_cannot_be_resampled_names_the_file(tmp_path: Path) -> None:
    sf.write(tmp_path / "odd.wav", _sine(440, 44101, 0.1), 44101, subtype="PCM_16")
    with pytest.raises(AudioDecodeError, match=r"cannot resample audio file .*odd\.wav from 44101 Hz to 16000 Hz"):
        read_audio(tmp_path / "odd.wav", 16000)
    assert read_audio(tmp_path / "odd.wav", 44101).numel() == 4410  # its own rate still reads


@pytest.mark.parametrize("file_rate", [16000, 8000])
def test_window_equals_crop_of_whole_file(tmp_path: Path, file_rate: int) -> None:
    # Same rate: a seek; other rate: resample everything, then crop. Both must agree with reading all and cropping.
    x = np.random.default_rng(0).uniform(-0.5, 0.5, file_rate)
    sf.write(tmp_path / "long.wav", x, file_rate, subtype="PCM_16")
    full = read_audio(tmp_path / "long.wav", 16000)
    torch.testing.assert_close(read_audio(tmp_path / "long.wav", 16000, offset=1000, num_samples=300), full[1000:1300])
    torch.testing.assert_close(read_audio(tmp_path / "long.wav", 16000, offset=15900, num_samples=300), full[15900:])
    assert read_audio(tmp_path / "long.wav", 16000, offset=20000, num_samples=10).numel() == 0
    torch.testing.assert_close(read_audio(tmp_path / "long.wav", 16000, offset=5), full[5:])


def test_fix_length_crops() -> None:
    wave = torch.arange(10.0)
    assert fix_length(wave, 4, "center").tolist() == [3, 4, 5, 6]
    assert fix_length(wave, 4, "start").tolist() == [0, 1, 2, 3]
    assert fix_length(wave, 10, "random") is wave
    starts = {int(fix_length(wave, 4, "random")[0]) for _ in range(200)}
    assert starts == set(range(7)), "every crop offset occurs"


def test_fix_length_pads_with_zeros() -> None:
    wave = torch.tensor([1.0, 2.0])
    assert fix_length(wave, 5, "center").tolist() == [0, 1, 2, 0, 0]
    assert fix_length(wave, 5, "start").tolist() == [1, 2, 0, 0, 0]
    placements = {fix_length(wave, 5, "random").tolist().index(1.0) for _ in range(200)}
    assert placements == {0, 1, 2, 3}
    assert fix_length(torch.zeros(0), 3).tolist() == [0, 0, 0]


def test_fix_length_batched_and_seeded() -> None:
    waves = torch.randn(2, 3, 50)
    assert fix_length(waves, 20, "random").shape == (2, 3, 20)
    assert fix_length(waves, 80, "center").shape == (2, 3, 80)
    a = fix_length(waves, 20, "random", generator=torch.Generator().manual_seed(3))
    b = fix_length(waves, 20, "random", generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_fix_length_errors() -> None:
    with pytest.raises(
        ValueError, match=r"unknown fix_length mode 'middle'; choose one of \['random', 'center', 'start'\]"
    ):
        fix_length(torch.zeros(4), 2, "middle")
    with pytest.raises(ValueError, match="length must be >= 0 samples, got -1"):
        fix_length(torch.zeros(4), -1)


def test_resampler_is_shared_and_keeps_the_pitch() -> None:
    assert resampler(22050, 16000) is resampler(22050, 16000)
    with torch.no_grad():
        wave = resampler(22050, 16000)(torch.from_numpy(_sine(440, 22050, 0.5)).float())
    assert wave.shape == (8000,) and abs(_peak_hz(wave, 16000) - 440) < 5
