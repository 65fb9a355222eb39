"""Every position scheme in every family: cached decoding = full decoding, NoPE without position parameters, 2-D
rotary on other grids, and the one-line build errors for schemes a family cannot serve."""

from __future__ import annotations

import pytest
import torch

from mmattn.models import DecoderOnly, EncoderDecoder, greedy_decode
from mmattn.tasks.vision import ViT

SEQUENCE = ["sinusoidal", "learned", "rotary", "alibi", "t5", "none"]
# Every scheme at 0, 1, 2, ... and at randomised positions (NoPE has no positions to draw).
WITH_RANDOM = [(p, r) for p in SEQUENCE for r in (None, 48) if not (p == "none" and r)]


def _lm(positions: str, random_positions: int | None = None) -> DecoderOnly:
    torch.manual_seed(0)
    return DecoderOnly(
        vocab_size=40,
        dim=32,
        depth=2,
        num_heads=4,
        context_length=16,
        positions=positions,
        random_positions=random_positions,
    ).eval()


def _seq2seq(positions: str, random_positions: int | None = None) -> EncoderDecoder:
    torch.manual_seed(0)
    return EncoderDecoder(
        src_vocab_size=30,
        tgt_vocab_size=30,
        dim=32,
        encoder_depth=1,
        decoder_depth=2,
        num_heads=4,
        dropout=0.0,
        positions=positions,
        encoder_positions="rotary" if positions == "none" else None,
        max_positions=64,
        random_positions=random_positions,
    ).eval()


@pytest.mark.parametrize(("positions", "random_positions"), WITH_RANDOM)
def test_decoder_only_caches_every_scheme(positions, random_positions):
    model = _lm(positions, random_positions)
    ids = torch.randint(4, 40, (2, 11))
    cache = model.init_cache(2, 11)
    parts = [model(ids[:, :4], cache=cache), model(ids[:, 4:5], cache=cache), model(ids[:, 5:], cache=cache)]
    full = model(ids, positions=None if cache.positions is None else cache.positions[:11])
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    assert (cache.positions is None) == (random_positions is None)  # default positions are sliced, not stored
    if random_positions:
        assert (cache.positions[1:] > cache.positions[:-1]).all() and int(cache.positions.max()) < 48
        torch.testing.assert_close(model(ids), model(ids))  # evaluation draws repeat
        model.train()
        assert not torch.allclose(model(ids), model(ids))  # training draws differ


def test_nope_has_no_position_parameter_and_still_tells_positions_apart():
    nope, learned = _lm("none"), _lm("learned")
    names = {n for n, _ in nope.named_parameters()}
    assert not any("position" in n or "relative" in n for n in names)
    assert sum(p.numel() for p in learned.parameters()) - sum(p.numel() for p in nope.parameters()) == 16 * 32
    ids = torch.full((1, 5), 7)  # the same token everywhere: causal attention still gives each its own output
    out = nope(ids)[0]
    assert not torch.allclose(out[0], out[4])


@pytest.mark.parametrize(("positions", "random_positions"), WITH_RANDOM)
def test_encoder_decoder_decodes_every_scheme_with_its_cache(positions, random_positions):
    model = _seq2seq(positions, random_positions)
    src = torch.randint(3, 30, (2, 6))
    src[1, 4:] = 0
    out = greedy_decode(model, src, bos_id=1, eos_id=2, banned_ids=(0, 1))
    memory, mask = model.encode(src)
    cache = model.init_cache(2, out.shape[1] + 1, memory)
    tgt_in = torch.cat([torch.ones(2, 1, dtype=torch.long), out[:, :-1]], dim=1)
    steps = [model.decode(tgt_in[:, t : t + 1], memory, mask, cache=cache) for t in range(tgt_in.shape[1])]
    placed = None if cache.positions is None else cache.positions[: tgt_in.shape[1]]
    full = model.decode(tgt_in, memory, mask, positions=placed)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    if random_positions is None:
        torch.testing.assert_close(
            greedy_decode(model, src, bos_id=1, eos_id=2, banned_ids=(0, 1), use_cache=False), out
        )


@pytest.mark.parametrize("pos_embed", ["rotary2d", "rotary2d_mixed"])
def test_vit_with_2d_rotary_takes_other_resolutions_and_learns_mixed_frequencies(pos_embed):
    torch.manual_seed(0)
    vit = ViT(img_size=16, patch_size=4, in_chans=1, num_classes=3, dim=32, depth=2, num_heads=2, pos_embed=pos_embed)
    assert vit.pos_embed is None
    for size in (16, 24):
        assert vit(torch.randn(2, 1, size, size)).shape == (2, 3)
    vit(torch.randn(2, 1, 16, 16)).sum().backward()
    freqs = [p for n, p in vit.named_parameters() if n.endswith("freqs")]
    assert len(freqs) == (pos_embed == "rotary2d_mixed")
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in freqs)
    assert "encoder.relative.*" in vit.no_weight_decay()


def test_schemes_a_family_cannot_serve_stop_at_build_time_with_one_line():
    kw = {"src_vocab_size": 30, "tgt_vocab_size": 30, "dim": 32, "encoder_depth": 1, "decoder_depth": 1}
    with pytest.raises(ValueError, match="encoder_positions='none' \\(NoPE\\) cannot order the tokens"):
        EncoderDecoder(**kw, num_heads=4, positions="none")
    with pytest.raises(ValueError, match="draws positions up to 99, beyond the learned table of 64"):
        EncoderDecoder(**kw, num_heads=4, positions="learned", max_positions=64, random_positions=100)
    with pytest.raises(ValueError, match="positions='none' \\(NoPE\\) has none"):
        DecoderOnly(vocab_size=40, dim=32, depth=1, num_heads=4, positions="none", random_positions=64)
    with pytest.raises(ValueError, match="random_positions=8 cannot place 16 tokens"):
        DecoderOnly(vocab_size=40, dim=32, depth=1, num_heads=4, context_length=16, random_positions=8)
    with pytest.raises(ValueError, match="positions must be one of .* got 'rotary2d'"):
        DecoderOnly(vocab_size=40, dim=32, depth=1, num_heads=4, positions="rotary2d")
    with pytest.raises(ValueError, match="pos_embed must be one of .* got 't5' \\(1-D schemes"):
        ViT(img_size=16, patch_size=4, dim=32, depth=1, num_heads=2, pos_embed="t5")
    with pytest.raises(ValueError, match="axial 2-D rotary needs head_dim divisible by 4, got 6"):
        ViT(img_size=16, patch_size=4, dim=12, depth=1, num_heads=2, pos_embed="rotary2d")
    model = _lm("learned")
    with pytest.raises(ValueError, match="position 16 is beyond the learned table of 16"):
        model(torch.randint(4, 40, (1, 5)), positions=torch.arange(12, 17))
