"""SpeechFrontEnd: the audio adapter's features at their natural length, exact padding invariance, the lengths the
conv subsampling really produces, and its place as an EncoderDecoder source."""

import pytest
import torch

from mmattn.models import EncoderDecoder
from mmattn.models.decoding import ctc_greedy_decode, greedy_decode
from mmattn.tasks.audio.features import AudioFeatures
from mmattn.tasks.speech import ConvSubsampling, SpeechFrontEnd, collate_audio

RATE = 16000


def _waves(*seconds: float, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = [torch.arange(int(s * RATE)) / RATE for s in seconds]
    # A chirp plus noise: spectra that vary over time, so normalisation and masks have something to act on.
    return [0.3 * torch.sin(2 * torch.pi * (300 + 800 * x) * x) + 0.01 * torch.randn(x.shape, generator=g) for x in t]


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_output_lengths_are_what_the_convolutions_produce(factor: int) -> None:
    sub = ConvSubsampling(80, 32, factor=factor, channels=8)
    for frames in (15, 16, 17, 64, 99):
        out = sub(torch.zeros(1, frames, 80))
        assert out.shape == (1, int(sub.output_lengths(torch.tensor([frames]))[0]), 32)
    assert ConvSubsampling(80, 32, factor=4).output_lengths(torch.tensor([98]))[0] == 23  # 1 s -> 23 tokens of 40 ms


def test_global_features_equal_the_audio_adapters_per_clip() -> None:
    front = SpeechFrontEnd(32, num_mel_bins=80, normalize="global", subsampling=1, positions="none").eval()
    waves = _waves(1.0, 0.55)
    batch = collate_audio(waves)
    feats, frames = front._features(batch["audio"], batch["audio_lengths"])
    reference = AudioFeatures("fbank", num_mel_bins=80, target_length=None)
    for row, wave, n in zip(feats, waves, frames.tolist()):
        expected = reference(wave)
        assert n == expected.shape[0]
        torch.testing.assert_close(row[:n], expected, atol=1e-4, rtol=1e-4)
        assert not row[n:].any()  # zero beyond the clip's end


def test_utterance_normalisation_uses_only_the_clip_and_removes_its_level() -> None:
    front = SpeechFrontEnd(32, num_mel_bins=80, subsampling=1, positions="none").eval()
    wave = _waves(0.8)[0]
    quiet = collate_audio([wave * 0.05])
    loud_padded = collate_audio([wave, torch.zeros(RATE)])  # the same clip, louder, beside a longer one
    a, n = front._features(quiet["audio"], quiet["audio_lengths"])
    b, _ = front._features(loud_padded["audio"], loud_padded["audio_lengths"])
    n = int(n[0])
    raw = AudioFeatures("fbank", num_mel_bins=80, target_length=None).raw(wave)
    torch.testing.assert_close(b[0, :n], (raw - raw.mean()) / raw.std(unbiased=False), atol=1e-4, rtol=1e-4)
    # A gain is an additive constant of the log-mel, which the statistics take out; except in bins at the log floor
    # (the lowest filters after Kaldi's DC removal), which no gain moves.
    floor = torch.finfo(torch.float32).eps
    live = raw > torch.tensor(floor).log() + 8
    assert live.float().mean() > 0.75
    torch.testing.assert_close(a[0, :n][live], b[0, :n][live], atol=0.15, rtol=0)


@pytest.mark.parametrize("positions", ["sinusoidal", "none"])
def test_tokens_do_not_depend_on_batch_padding(positions: str) -> None:
    torch.manual_seed(0)
    front = SpeechFrontEnd(32, num_mel_bins=40, channels=8, positions=positions, freq_mask=8, time_mask=8).eval()
    waves = _waves(1.2, 0.4, 0.75)
    tokens, mask, layout = front(collate_audio(waves))
    assert mask is not None
    for i, wave in enumerate(waves):
        alone, alone_mask, _ = front(collate_audio([wave]))
        n = alone.shape[1]
        assert alone_mask is None and int((~mask[i]).sum()) == n == front.num_frames(wave.numel())
        torch.testing.assert_close(tokens[i, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_spec_augment_acts_in_training_only() -> None:
    torch.manual_seed(0)
    front = SpeechFrontEnd(32, num_mel_bins=40, channels=8, freq_mask=10, time_mask=10)
    batch = collate_audio(_waves(1.0))
    front.train()
    masked, _ = front._features(batch["audio"], batch["audio_lengths"])
    front.eval()
    clean, _ = front._features(batch["audio"], batch["audio_lengths"])
    again, _ = front._features(batch["audio"], batch["audio_lengths"])
    assert not torch.equal(masked, clean) and torch.equal(clean, again)


def test_a_speech_encoder_decoder_trains_decodes_and_checks_its_input() -> None:
    torch.manual_seed(0)
    front = SpeechFrontEnd(32, num_mel_bins=40, channels=8)
    net = EncoderDecoder(
        src_vocab_size=0,
        tgt_vocab_size=12,
        dim=32,
        encoder_depth=1,
        decoder_depth=1,
        num_heads=4,
        source=front,
        ctc=True,
    ).eval()
    src = collate_audio(_waves(0.9, 0.3))
    tgt_in = torch.tensor([[1, 5, 6], [1, 7, 0]])
    assert net(src, tgt_in).shape == (2, 3, 12)
    # Budgets count encoder tokens (21 and 6 here), not samples.
    out = greedy_decode(net, src, bos_id=1, eos_id=2, max_len_a=0.0, max_len_b=4)
    assert out.shape[1] <= 4
    assert ctc_greedy_decode(net, src, blank_id=0, eos_id=2).shape[0] == 2
    with pytest.raises(ValueError, match="audio_lengths"):
        front({"audio": src["audio"]})
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        front({"audio": src["audio"][0], "audio_lengths": src["audio_lengths"]})
    with pytest.raises(ValueError, match="subsampling factor"):
        SpeechFrontEnd(32, subsampling=3)
