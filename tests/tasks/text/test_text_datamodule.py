"""Plain-text LM data: documents, packing with bos/eos into overlapping blocks, folder layouts, the SCAN demo text."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmattn.tasks.text import SCANCommandsDataModule, TextFolderDataModule, is_scan_command, make_scan_commands
from mmattn.tasks.text.bpe import BOS_ID, EOS_ID
from mmattn.tasks.text.datamodule import read_documents


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_documents_are_lines_paragraphs_or_files(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.txt", "one line\ntwo line\n\n\nnew para\n")
    assert read_documents([f], "line") == ["one line", "two line", "new para"]
    assert read_documents([f], "paragraph") == ["one line\ntwo line", "new para"]
    assert read_documents([f], "file") == ["one line\ntwo line\n\n\nnew para"]
    (tmp_path / "bad.txt").write_bytes(b"ok\xff\xfe")
    with pytest.raises(ValueError, match="bad.txt is not valid UTF-8"):
        read_documents([tmp_path / "bad.txt"], "line")


def test_split_folders_are_packed_into_blocks_with_bos_and_eos(tmp_path: Path) -> None:
    _write(tmp_path / "train" / "x" / "a.txt", "abc\nde\n")
    _write(tmp_path / "valid" / "b.txt", "fg\n")
    dm = TextFolderDataModule(tmp_path, tokenizer="bytes", documents="line", block_size=3, batch_size=2)
    dm.setup("fit")
    b = lambda s: [4 + c for c in s.encode()]  # noqa: E731
    stream = [BOS_ID, *b("abc"), EOS_ID, BOS_ID, *b("de"), EOS_ID]
    assert dm.datasets["train"].stream.tolist() == stream
    # Blocks of block_size + 1 tokens, consecutive ones sharing a token; the partial tail (2 targets) is dropped.
    blocks = [dm.datasets["train"][i]["ids"].tolist() for i in range(len(dm.datasets["train"]))]
    assert blocks == [stream[0:4], stream[3:7]]
    batch = next(iter(dm.val_dataloader()))
    assert batch["ids"].tolist() == [[BOS_ID, *b("fg"), EOS_ID]] and dm.datasets["test"] is dm.datasets["val"]


def test_a_flat_folder_is_split_by_documents_and_the_tokenizer_is_saved_and_reused(tmp_path: Path) -> None:
    lines = "".join(f"walk {w} twice\n" for w in ["left", "right", "around", "and", "after"] * 8)
    _write(tmp_path / "text" / "corpus.txt", lines)
    kw = dict(documents="line", block_size=8, vocab_size=64, min_frequency=1, tokenizer_dir=tmp_path / "tok")
    dm = TextFolderDataModule(tmp_path / "text", val_fraction=0.25, **kw)
    dm.prepare_data()
    dm.setup("fit")
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    again = TextFolderDataModule(tmp_path / "text", val_fraction=0.25, **kw)
    again.setup("fit")
    assert again.tokenizer == dm.tokenizer
    assert torch.equal(again.datasets["val"].stream, dm.datasets["val"].stream)
    n_val = int((dm.datasets["val"].stream == BOS_ID).sum())
    assert n_val == 10 and int((dm.datasets["train"].stream == BOS_ID).sum()) == 30


def test_bad_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no text folder at"):
        TextFolderDataModule(tmp_path / "missing").setup()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .txt files"):
        TextFolderDataModule(tmp_path / "empty").setup()
    _write(tmp_path / "t" / "train" / "a.txt", "abc\n")
    with pytest.raises(FileNotFoundError, match="no valid/"):
        TextFolderDataModule(tmp_path / "t").setup()
    _write(tmp_path / "t" / "valid" / "a.txt", "abc\n")
    with pytest.raises(ValueError, match="the train split has 5 tokens, fewer than one block"):
        TextFolderDataModule(tmp_path / "t", tokenizer="bytes", block_size=16).setup()
    with pytest.raises(ValueError, match="data.documents must be one of"):
        TextFolderDataModule(tmp_path, documents="sentence")


def test_scan_command_text_is_shuffled_complete_and_grammatical(tmp_path: Path) -> None:
    root = make_scan_commands(tmp_path)
    lines = {split: (root / split / "commands.txt").read_text().splitlines() for split in ("train", "valid", "test")}
    assert sum(map(len, lines.values())) == 20910 and len(set().union(*map(set, lines.values()))) == 20910
    assert all(is_scan_command(line) for line in lines["test"])
    # Shuffled: in grammar order the 16 commands after "walk" would all start with "walk".
    assert len({line.split()[0] for line in lines["train"][:16]}) > 1
    assert not is_scan_command("walk twice twice") and not is_scan_command("") and is_scan_command(" jump left ")
    dm = SCANCommandsDataModule(tmp_path, vocab_size=128, min_frequency=1, block_size=32)
    dm.setup("fit")
    assert dm.tokenizer.vocab_size <= 128 and len(dm.tokenizer.encode("jump around left twice")) == 4
