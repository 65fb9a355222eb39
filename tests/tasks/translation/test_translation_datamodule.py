"""Translation datamodules on real files: SCAN end to end, any parallel-text folder, filtering, tokenizer reuse."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sacrebleu
import torch

from mmattn.lit import Seq2SeqModule, tokenizer_from_checkpoint
from mmattn.tasks.translation import SCANDataModule, Seq2SeqTokenizer, TranslationDataModule
from mmattn.tasks.translation.tokenizer import EOS_ID, PAD_ID


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> SCANDataModule:
    root = tmp_path_factory.mktemp("scan")
    dm = SCANDataModule(root, tokenizer_dir=root / "tok", vocab_size=128, min_frequency=1, max_tokens=512)
    dm.prepare_data()
    dm.setup()
    return dm


def test_scan_batches(scan: SCANDataModule) -> None:
    tok = scan.tokenizer
    assert (len(scan.datasets["train"]), len(scan.datasets["val"]), len(scan.datasets["test"])) == (15892, 836, 4182)
    # 128 tokens make every SCAN word and action a single token.
    assert tok.src.encode("jump around left twice").tokens == ["▁jump", "▁around", "▁left", "▁twice"]
    loader = scan.train_dataloader()
    seen = batches = 0
    for batch in loader:
        src, tgt = batch["src"], batch["tgt"]
        assert src.shape[0] * max(src.shape[1], tgt.shape[1]) <= 512
        last = (tgt != PAD_ID).sum(1) - 1
        assert (tgt[torch.arange(len(tgt)), last] == EOS_ID).all()  # every target ends with EOS, then padding
        assert [tok.decode_tgt(t) for t in tgt.tolist()] == batch["ref"]
        seen += len(batch["ref"])
        batches += 1
    assert seen == 15892 and batches == len(loader)


def test_tokenizer_is_saved_and_reused(scan: SCANDataModule, tmp_path: Path) -> None:
    again = SCANDataModule(scan.data_root, tokenizer_dir=scan.tokenizer_dir, vocab_size=16)
    again.setup()  # vocab_size differs, but the saved tokenizer is loaded, not retrained
    assert again.tokenizer.to_dict() == scan.tokenizer.to_dict()
    assert (scan.tokenizer_dir / "tokenizer.json").is_file()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_parallel_text_filters_training_pairs_and_keeps_eval(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = ["ein haus", "", "zwei katzen", " ".join(["wort"] * 40), "drei hunde"] * 4
    tgt = ["a house", "nothing", "two cats", "word", "three dogs"] * 4
    for split in ("train", "valid"):
        _write(tmp_path / f"{split}.de", src)
        _write(tmp_path / f"{split}.en", tgt)
    dm = TranslationDataModule(tmp_path, src_lang="de", tgt_lang="en", vocab_size=64, min_frequency=1, max_len=12)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert len(dm.datasets["train"]) == 12  # empty source and 40-word pairs dropped
    assert "'empty': 4" in caplog.text and "'too_long': 4" in caplog.text
    assert len(dm.datasets["val"]) == 20 and dm.datasets["test"] is dm.datasets["val"]  # no test files
    # Characters never seen in training become <unk>, never an error.
    assert dm.tokenizer.encode_src("ein haus 🏠")[-2] == dm.tokenizer.unk_id


def test_parallel_text_errors_name_files(tmp_path: Path) -> None:
    _write(tmp_path / "train.de", ["a", "b", "c"])
    _write(tmp_path / "train.en", ["a", "b"])
    dm = TranslationDataModule(tmp_path, src_lang="de", tgt_lang="en", vocab_size=64)
    with pytest.raises(ValueError, match=r"train\.de.*3.*train\.en.*2|train\.en.*2.*train\.de.*3"):
        dm.setup()
    with pytest.raises(FileNotFoundError, match="no parallel text at"):
        TranslationDataModule(tmp_path / "nope", src_lang="de", tgt_lang="en").setup()
    with pytest.raises(ValueError, match="max_len 300 exceeds max_tokens 256"):
        TranslationDataModule(tmp_path, src_lang="de", tgt_lang="en", max_tokens=256, max_len=300)


def test_text_metrics_equal_sacrebleu() -> None:
    hyps = ["the cat sat on the mat", "a quick brown fox jumps", "hello world !", "I_WALK I_WALK"]
    refs = ["the cat sat on a mat", "the quick brown fox jumped", "hello world!", "I_WALK I_WALK"]
    metrics = Seq2SeqModule._metrics(["bleu", "chrf", "exact"], {}, "test/")
    metrics["bleu"].update(hyps, [[r] for r in refs])
    metrics["chrf"].update(hyps, [[r] for r in refs])
    metrics["exact"].update(hyps, refs)
    values = metrics.compute()
    assert 100 * float(values["test/bleu"]) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-4)
    # torchmetrics accumulates chrF statistics in float32: agreement to 1e-3 points.
    assert 100 * float(values["test/chrf"]) == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-3)
    assert float(values["test/exact"]) == pytest.approx(0.25)


def test_checkpoint_without_tokenizer_is_refused() -> None:
    with pytest.raises(ValueError, match="carries no tokenizer"):
        tokenizer_from_checkpoint({"state_dict": {}})
    tok = Seq2SeqTokenizer.train(["a b c"], ["x y z"], vocab_size=32, min_frequency=1)
    stored = {"mmattn_tokenizer": {"class": "mmattn.tasks.translation.Seq2SeqTokenizer", **tok.to_dict()}}
    assert tokenizer_from_checkpoint(stored).encode_src("a b") == tok.encode_src("a b")


def test_validation_order_is_fixed_and_mixes_lengths(scan: SCANDataModule) -> None:
    first = [b["ref"] for b in scan.val_dataloader()]
    loader = scan.val_dataloader()
    loader.batch_sampler.set_epoch(5)  # Lightning does this every epoch; the order must not move
    assert [b["ref"] for b in loader] == first
    lengths = [len(refs[0].split()) for refs in first[:8]]
    assert len(set(lengths)) > 2  # the decoded first batches are not just the shortest sentences


def test_module_refuses_a_datamodule_with_another_tokenizer(scan: SCANDataModule) -> None:
    from types import SimpleNamespace

    from mmattn.models import EncoderDecoder

    other = Seq2SeqTokenizer.train(["a b c"], ["x y z"], vocab_size=32, min_frequency=1)
    net = EncoderDecoder(src_vocab_size=128, tgt_vocab_size=128, dim=16, encoder_depth=1, decoder_depth=1, num_heads=2)
    module = Seq2SeqModule(net, tokenizer=other)
    module._trainer = SimpleNamespace(datamodule=scan)
    with pytest.raises(ValueError, match="tokenizer differs from the one stored with this model"):
        module.setup("test")
    module.tokenizer = None  # training from scratch: the datamodule's tokenizer is taken
    module.setup("fit")
    assert module.tokenizer is scan.tokenizer
