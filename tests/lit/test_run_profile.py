"""RunProfile: parameters per block (shared tensors once), training FLOPs per sample equal to the matmul count of a
known net, the last epoch's throughput, all in the run's metrics."""

import pytest
import torch

from mmattn.lit.profile import RunProfile, parameters_per_block
from mmattn.models import EncoderDecoder


def test_flops_params_and_throughput_reach_the_metrics(make_module, make_trainer, tiny_data) -> None:
    trainer = make_trainer(callbacks=[RunProfile()], max_epochs=2)
    module = make_module()
    trainer.fit(module, datamodule=tiny_data(n=40, batch_size=8))
    m = trainer.callback_metrics
    # TinyNet = LayerNorm(48) + Linear(48 -> 10): forward x W^T, backward dL/dx and dL/dW, 3 matmuls of 2*48*10.
    assert m["profile/train_gflops_per_sample"].item() == pytest.approx(3 * 2 * 48 * 10 / 1e9)
    assert m["profile/params"].item() == sum(p.numel() for p in module.net.parameters()) == 2 * 48 + 48 * 10 + 10
    assert m["profile/samples_per_s"].item() > 0


def test_parameters_per_block_counts_tied_weights_once() -> None:
    net = EncoderDecoder(src_vocab_size=20, tgt_vocab_size=20, dim=16, encoder_depth=1, decoder_depth=1, num_heads=2)
    blocks = parameters_per_block(net)
    assert set(blocks) >= {"tgt_embed", "encoder", "decoder"} and blocks["output"] == 0  # tied to tgt_embed
    assert sum(blocks.values()) == sum(p.numel() for p in net.parameters())


def test_every_module_counts_its_own_batches() -> None:
    # The module knows its batch structure, so the profile never guesses it from keys or shapes.
    from mmattn.lit import ClassificationModule, LanguageModelModule, Seq2SeqModule

    x = torch.zeros(5, 3)
    assert ClassificationModule.batch_size(None, (x, torch.zeros(5))) == 5
    batch = {"src": {"audio": torch.zeros(4, 9)}, "tgt": torch.zeros(4, 2), "ref": ["a"] * 4}
    assert Seq2SeqModule.batch_size(None, batch) == 4
    assert LanguageModelModule.batch_size(None, {"ids": torch.zeros(7, 3)}) == 7


def test_the_final_report_lists_the_blocks(run_cli, tiny_train, tmp_path) -> None:
    result = run_cli("mmattn-train", *tiny_train, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.stdout[result.stdout.index("parameters per block") :]  # after the model summary of the start
    assert "encoder" in report and "pos_drop" not in report  # blocks without parameters are left out
    assert report.index("profile/train_gflops_per_sample") < report.index("run directory")
