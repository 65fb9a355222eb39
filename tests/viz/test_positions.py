"""Position-encoding pictures: the numbers behind them (relative-position structure, ALiBi, the softmax scale) and
valid PNG files with content, also through mmattn-viz with a checkpoint's learned table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmattn_testing import is_picture

from mmattn.models import DecoderOnly
from mmattn.nn import LearnedPositionalEmbedding, RotaryEmbedding2D, T5RelativeBias
from mmattn.tasks.vision import ViT
from mmattn.viz.positions import (
    alibi_biases,
    relative_modules,
    rotary2d_scores,
    rotary_similarity,
    sinusoidal_similarity,
    softmax_saturation,
    t5_bias_by_offset,
    write_position_pictures,
)


def test_fixed_encodings_depend_on_relative_position_only() -> None:
    for sim in (sinusoidal_similarity(40, 32), rotary_similarity(40, 32)):
        # Toeplitz: every diagonal is constant (a function of p - r), and the peak is p = r.
        for offset in range(-5, 6):
            d = torch.diagonal(sim, offset)
            torch.testing.assert_close(d, d[:1].expand_as(d), atol=1e-4, rtol=0)
        assert int(sim[20].argmax()) == 20
    torch.testing.assert_close(torch.diagonal(sinusoidal_similarity(10, 32)), torch.full((10,), 16.0))  # D/2 pairs


def test_alibi_and_softmax_saturation() -> None:
    b = alibi_biases(8, 5)
    assert b.shape == (8, 5, 5) and (b <= 0).all() and (torch.diagonal(b, dim1=1, dim2=2) == 0).all()
    torch.testing.assert_close(b[0, 0, 3], torch.tensor(-3 * 2.0**-1))  # slope of head 0 is 2^(-8/8)
    sat = softmax_saturation((4, 64, 1024), num_keys=64, trials=64)
    assert sat["unscaled"][-1] > 0.9 and sat["scaled"][-1] < 0.3  # one-hot without the scale, spread with it
    assert sat["unscaled"] == sorted(sat["unscaled"])


def test_pictures_are_pngs_with_content(tmp_path: Path) -> None:
    torch.manual_seed(0)
    learned = {"embed.positions": LearnedPositionalEmbedding(32, 16, init_std=1.0).weight}
    dec = DecoderOnly(vocab_size=20, dim=16, depth=1, num_heads=4, positions="t5")
    vit = ViT(img_size=16, patch_size=4, dim=16, depth=2, num_heads=2, pos_embed="rotary2d_mixed")
    relative = {**relative_modules(dec), **relative_modules(vit)}
    assert set(relative) == {"decoder.relative.t5", "encoder.relative.rope2d"}
    paths = write_position_pictures(
        tmp_path, num_positions=32, dim=16, num_heads=4, learned=learned, relative=relative, dpi=50
    )
    names = {p.name for p in paths}
    assert names == {
        "positions_sinusoidal_table.png",
        "positions_similarity.png",
        "positions_alibi.png",
        "positions_t5_bias.png",
        "positions_rotary2d.png",
        "positions_random.png",
        "softmax_saturation.png",
    }
    assert all(is_picture(p) for p in paths)


def test_relative_pictures_show_the_schemes_numbers() -> None:
    t5 = T5RelativeBias(2, bidirectional=False)
    values = t5_bias_by_offset(t5, 5)  # a causal bias: every key after the query shares bucket 0
    torch.testing.assert_close(values[:, 5:], t5.table.weight[0][:, None].expand(2, 6))
    scores = rotary2d_scores(RotaryEmbedding2D(8, 2, mode="axial"), 7)
    assert scores.shape == (2, 7, 7)
    assert int(scores[0].argmax()) == 3 * 7 + 3  # the centre scores highest against itself
    torch.testing.assert_close(scores[0], scores[0].flip(0).flip(1))  # the offset's sign does not matter for ones


@pytest.mark.slow
def test_mmattn_viz_draws_a_checkpoints_learned_table(run_cli, compose_cfg, env_data_dir, tmp_path: Path) -> None:
    from omegaconf import open_dict

    from mmattn.cli.train import train as train_run
    from mmattn.cli.viz import visualize

    train = [
        "experiment=lm_demo",
        "model.positions=learned",
        "model.dim=32",
        "model.depth=1",
        "model.num_heads=2",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "module.sample_eval=null",
    ]
    cfg = compose_cfg("train", train)
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "run"), str(tmp_path / "logs")
    train_run(cfg)  # in this process: the picture command is the one run as a user runs it
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    result = run_cli(
        "mmattn-viz", "what=positions", f"ckpt_path={ckpt}", "out_dir=pics", "num_positions=48", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    paths = [Path(line) for line in result.stdout.splitlines()]
    assert len(paths) == 7 and all(is_picture(tmp_path / p if not p.is_absolute() else p) for p in paths)
    with pytest.raises(ValueError, match=r"choose one of \['positions', 'attention'\]"):
        visualize(compose_cfg("viz", ["what=nope"]))


def test_missing_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` sees where it is not installed
    with pytest.raises(ImportError, match=r"pip install 'mmattn\[viz\]'"):
        write_position_pictures(tmp_path)
