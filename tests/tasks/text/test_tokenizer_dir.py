"""TokenizerInRunDir: rank 0 trains and saves in prepare_data, every other process and a resumed run load the saved
tokenizer, and the three text-producing datamodules share it."""

from __future__ import annotations

import inspect
from pathlib import Path

import lightning as L
import pytest

from mmattn.tasks.speech import SpeechDataModule
from mmattn.tasks.text import TextFolderDataModule, TextTokenizer, TokenizerInRunDir
from mmattn.tasks.translation import Seq2SeqTokenizer, TranslationDataModule

LINES = ["walk left twice", "jump around right", "look thrice and walk", "run opposite left"]


class _Counted(TokenizerInRunDir, L.LightningDataModule):
    """A datamodule that only has a tokenizer, counting how often it trains one."""

    tokenizer_class = TextTokenizer

    def __init__(self, tokenizer_dir: Path | None, lines: list[str] = LINES) -> None:
        super().__init__()
        self.tokenizer_dir = tokenizer_dir
        self.lines = lines
        self.builds = 0

    def build_tokenizer(self) -> TextTokenizer:
        self.builds += 1
        return TextTokenizer.train(self.lines, vocab_size=40, min_frequency=1)


def test_rank_zero_saves_in_prepare_data_and_the_others_load_it(tmp_path: Path) -> None:
    rank0, rank1 = _Counted(tmp_path / "tok"), _Counted(tmp_path / "tok")
    rank0.prepare_data()
    assert TextTokenizer.is_saved(tmp_path / "tok") and rank0.builds == 1
    for dm in (rank0, rank1):
        dm.setup_tokenizer()
    assert rank0.builds == 1 and rank1.builds == 0
    assert rank0.tokenizer.to_dict() == rank1.tokenizer.to_dict()


def test_a_resumed_run_loads_the_saved_tokenizer_instead_of_training_a_new_one(tmp_path: Path) -> None:
    first = _Counted(tmp_path / "tok")
    first.prepare_data()
    # The data changed since: a new tokenizer would differ, but the run's ids must keep their meaning.
    resumed = _Counted(tmp_path / "tok", lines=["something else entirely"] * 3)
    resumed.prepare_data()
    assert resumed.setup_tokenizer().to_dict() == TextTokenizer.load(tmp_path / "tok").to_dict()
    assert resumed.builds == 0


def test_without_a_directory_the_tokenizer_is_trained_in_memory(tmp_path: Path) -> None:
    dm = _Counted(None)
    dm.prepare_data()
    assert dm.builds == 0 and dm.tokenizer_dir is None
    assert dm.setup_tokenizer() is dm.tokenizer and dm.builds == 1
    # setup without a prior prepare_data (e.g. a process that skipped it) saves what it trained.
    lone = _Counted(tmp_path / "tok")
    lone.setup_tokenizer()
    assert lone.builds == 1 and TextTokenizer.is_saved(tmp_path / "tok")


def test_build_tokenizer_is_abstract() -> None:
    class NoBuild(TokenizerInRunDir, L.LightningDataModule):
        tokenizer_class = TextTokenizer

    with pytest.raises(TypeError, match="build_tokenizer"):
        NoBuild()


def test_a_half_saved_per_side_tokenizer_is_not_taken_for_a_saved_one(tmp_path: Path) -> None:
    tok = Seq2SeqTokenizer.train(LINES, LINES[::-1], vocab_size=40, min_frequency=1, joint=False)
    tok.save(tmp_path)
    assert Seq2SeqTokenizer.is_saved(tmp_path)
    (tmp_path / "tokenizer_tgt.json").unlink()
    # The old check (any tokenizer*.json) said yes here, and loading then failed.
    assert not Seq2SeqTokenizer.is_saved(tmp_path) and not TextTokenizer.is_saved(tmp_path)


@pytest.mark.parametrize("cls", [TextFolderDataModule, SpeechDataModule, TranslationDataModule])
def test_the_text_datamodules_share_the_helper(cls: type) -> None:
    assert issubclass(cls, TokenizerInRunDir)
    # The mixin's prepare_data, or one that runs it first (the text folder writes its token files after it).
    own = cls.prepare_data
    assert own is TokenizerInRunDir.prepare_data or "super().prepare_data()" in inspect.getsource(own)
    assert "setup_tokenizer" not in vars(cls) and "has_saved_tokenizer" not in vars(cls)
