"""capture_attention: the recorded weights are the layer's own (need_weights), only while recording, of the chosen
layers, with errors that list the valid layers."""

import pytest
import torch
from torch import nn

from mmattn.models import EncoderDecoder
from mmattn.nn import Encoder, MultiHeadAttention, attention_layers, capture_attention


def _encoder() -> Encoder:
    torch.manual_seed(0)
    return Encoder(32, 3, 4).eval()


def test_recorded_weights_are_the_layers_own_and_outputs_do_not_change() -> None:
    enc = _encoder()
    x = torch.randn(2, 6, 32)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    plain = enc(x, key_padding_mask=pad)
    with capture_attention(enc) as maps:
        recorded = enc(x, key_padding_mask=pad)
    torch.testing.assert_close(recorded, plain, atol=1e-5, rtol=1e-5)
    assert list(maps) == list(attention_layers(enc)) and all(len(v) == 1 for v in maps.values())
    first = maps[next(iter(maps))][0]
    assert first.shape == (2, 4, 6, 6)
    torch.testing.assert_close(first.sum(-1), torch.ones(2, 4, 6))
    assert not first[1, :, :, 4:].any()  # padded keys get no weight
    # The first layer sees the input itself: its weights equal need_weights=True on the same normalised input.
    layer = enc.layers[0]
    _, expected = layer.attn(layer.norm1(x), key_padding_mask=pad, need_weights=True)
    torch.testing.assert_close(first, expected)
    assert all(m.record is None for m in attention_layers(enc).values())  # off again after the block


def test_layer_selection_and_its_errors() -> None:
    enc = _encoder()
    names = list(attention_layers(enc))
    with capture_attention(enc, layers=[-1]) as maps:
        enc(torch.randn(1, 3, 32))
    assert list(maps) == [names[-1]]
    with capture_attention(enc, layers=["layers.[01].*"]) as maps:
        enc(torch.randn(1, 3, 32))
    assert list(maps) == names[:2]
    with pytest.raises(ValueError, match=r"index 3 is out of range; the valid ones are 0: layers.0.attn"):
        with capture_attention(enc, layers=[3]):
            pass
    with pytest.raises(ValueError, match="no attention layer matches 'decoder"):
        with capture_attention(enc, layers=["decoder.*"]):
            pass
    with pytest.raises(ValueError, match="has no attention layers"):
        with capture_attention(nn.Linear(3, 3)):
            pass
    with capture_attention(enc):
        with pytest.raises(ValueError, match="already recording"):
            with capture_attention(enc, layers=[0]):
                pass


def test_a_cached_decoder_records_one_map_per_step_and_cross_attention_sees_the_source() -> None:
    torch.manual_seed(0)
    model = EncoderDecoder(src_vocab_size=11, tgt_vocab_size=11, dim=32, encoder_depth=1, decoder_depth=1, num_heads=4)
    model.eval()
    src = torch.tensor([[4, 5, 6, 7, 0]])
    memory, mask = model.encode(src)
    cache = model.init_cache(1, 3, memory)
    with capture_attention(model, layers=["decoder.*cross_attn"]) as maps:
        for token in (1, 5, 6):
            model.decode(torch.tensor([[token]]), memory, mask, cache=cache)
    (steps,) = maps.values()
    assert [s.shape for s in steps] == [(1, 4, 1, 5)] * 3
    assert all(not s[..., 4].any() for s in steps)  # the padded source token
    assert isinstance(attention_layers(model)["decoder.layers.0.cross_attn"], MultiHeadAttention)
