"""Plain-text LM data: documents, packing with bos/eos into overlapping blocks, folder layouts, the SCAN demo text;
streamed and parallel tokenization into token files, and token maps that pickle as file names."""

from __future__ import annotations

import logging
import pickle
import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from mmattn.tasks.text import SCANCommandsDataModule, TextFolderDataModule, corpus, is_scan_command, make_scan_commands
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
    (tmp_path / "bad.txt").write_bytes(b"ok\nfine\nok\xff\xfe")
    with pytest.raises(ValueError, match=r"bad.txt is not valid UTF-8 \(byte 10\)"):
        read_documents([tmp_path / "bad.txt"], "line")


def _whole_text_documents(text: str, documents: str) -> list[str]:
    """The documents as splitting the whole text at once defines them (what the streaming reader must match)."""
    if documents == "file":
        parts = [text]
    else:
        text = text.replace("\r\n", "\n")
        parts = text.split("\n\n") if documents == "paragraph" else text.split("\n")
    return [p.strip("\n") for p in parts if p.strip()]


def test_documents_are_read_line_by_line_as_the_whole_text_splits_them(tmp_path: Path) -> None:
    text = "\ufeffa\r\nb \r\n\r\n\n\n c\n  \n\nd\re\n\n\n\n\n\tf\n \ng\r"
    f = tmp_path / "t.txt"
    f.write_bytes(text.encode("utf-8"))
    for mode in ("line", "paragraph", "file"):
        assert read_documents([f], mode) == _whole_text_documents(text[1:], mode), mode
    # Two files, a selection of their documents, read again on every pass.
    g = _write(tmp_path / "u.txt", "x\ny\n")
    docs = corpus.DocumentStream([f, g], "line", select=np.array([True, False, False, False, True, False, True, True]))
    assert list(docs) == list(docs) == ["a", "\tf", "x", "y"]


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


def test_byte_bpe_keeps_the_text_exactly_and_is_checked(tmp_path: Path) -> None:
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\n  All:\tSpeak, speak.\n" * 30
    _write(tmp_path / "train" / "a.txt", text)
    _write(tmp_path / "valid" / "b.txt", text[:200])
    dm = TextFolderDataModule(tmp_path, tokenizer="byte_bpe", vocab_size=300, documents="file", block_size=8)
    dm.setup("fit")
    stream = dm.datasets["train"].stream.tolist()
    assert stream[0] == BOS_ID and stream[-1] == EOS_ID
    assert dm.tokenizer.decode(stream[1:-1]) == text.strip("\n")  # "file" documents lose only their outer newlines
    assert len(stream) < len(text.encode()) / 2
    with pytest.raises(ValueError, match="data.tokenizer must be one of"):
        TextFolderDataModule(tmp_path, tokenizer="wordpiece")
    with pytest.raises(ValueError, match="byte_bpe needs data.vocab_size > 260"):
        TextFolderDataModule(tmp_path, tokenizer="byte_bpe", vocab_size=256)
    with pytest.raises(ValueError, match="data.lowercase=false"):
        TextFolderDataModule(tmp_path, tokenizer="byte_bpe", vocab_size=512, lowercase=True)


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
    assert np.array_equal(again.datasets["val"].stream, dm.datasets["val"].stream)
    assert dm.datasets["train"].stream.dtype == np.uint16  # 2 bytes a token in memory, not int64's 8
    n_val = int((dm.datasets["val"].stream == BOS_ID).sum())
    assert n_val == 10 and int((dm.datasets["train"].stream == BOS_ID).sum()) == 30


def test_token_files_are_written_once_mapped_by_every_process_and_rewritten_when_the_text_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mmattn.data.token_files import read_tokens, write_tokens

    _write(tmp_path / "text" / "train" / "a.txt", "".join(f"walk {w} twice\n" for w in ["left", "right"] * 20))
    _write(tmp_path / "text" / "valid" / "b.txt", "walk left\nwalk right\n")
    kw = dict(documents="line", block_size=4, vocab_size=64, min_frequency=1, tokenizer_dir=tmp_path / "tok")
    memory = TextFolderDataModule(tmp_path / "text", **kw)
    memory.setup("fit")
    dm = TextFolderDataModule(tmp_path / "text", token_dir=tmp_path / "tokens", **kw)
    dm.prepare_data()  # rank 0: the tokenizer, then the token files
    files = sorted(p.name for p in (tmp_path / "tokens").iterdir())
    assert files == ["train.bin", "train.json", "val.bin", "val.json"]
    written = (tmp_path / "tokens" / "train.bin").stat().st_mtime_ns
    other = TextFolderDataModule(tmp_path / "text", token_dir=tmp_path / "tokens", **kw)  # another process
    other.prepare_data()
    other.setup("fit")
    assert (tmp_path / "tokens" / "train.bin").stat().st_mtime_ns == written, "current files are not rewritten"
    stream = other.datasets["train"].stream
    assert isinstance(stream, np.memmap) and stream.dtype == np.uint16 and not stream.flags.writeable
    assert np.array_equal(stream, memory.datasets["train"].stream)
    assert all(torch.equal(other.datasets["val"][i]["ids"], memory.datasets["val"][i]["ids"]) for i in range(1))
    # Other text: the files no longer fit and are written again, from the new text.
    _write(tmp_path / "text" / "valid" / "b.txt", "walk right twice\nwalk left twice\nwalk left\n")
    again = TextFolderDataModule(tmp_path / "text", token_dir=tmp_path / "tokens", **kw)
    with caplog.at_level(logging.WARNING):
        again.setup("fit")
    assert len(again.datasets["val"].stream) > len(other.datasets["val"].stream)
    assert "train.bin was made from other input (other files): tokenizing the train split again" in caplog.text
    # Another tokenizer (here a smaller vocabulary): what differs is named, and the files are made again.
    caplog.clear()
    smaller = TextFolderDataModule(
        tmp_path / "text", token_dir=tmp_path / "tokens", **{**kw, "vocab_size": 20, "tokenizer_dir": tmp_path / "t2"}
    )
    with caplog.at_level(logging.WARNING):
        smaller.setup("fit")
    reason = r"train.bin was made from other input \(other tokenizer; vocab_size \d+ in the file, 20 now\)"
    assert re.search(reason, caplog.text), caplog.text
    # A killed writer leaves only a temporary file; a file cut short after its description was written is named.
    fingerprint = {"x": 1}
    assert read_tokens(tmp_path / "none.bin", fingerprint=fingerprint) is None
    write_tokens(tmp_path / "cut.bin", [np.arange(10)], vocab_size=16, fingerprint=fingerprint)
    assert read_tokens(tmp_path / "cut.bin", fingerprint={"x": 2}) is None
    with open(tmp_path / "cut.bin", "r+b") as f:
        f.truncate(6)
    with pytest.raises(ValueError, match=r"cut.bin holds 6 bytes but cut.json describes 10 tokens"):
        read_tokens(tmp_path / "cut.bin", fingerprint=fingerprint)
    with pytest.raises(ValueError, match=r"id 16 lies outside the vocabulary \[0, 16\)"):
        write_tokens(tmp_path / "big.bin", [np.arange(17)], vocab_size=16, fingerprint=fingerprint)
    assert not list(tmp_path.glob(".big.bin*")) and not (tmp_path / "big.bin").exists()


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


def _corpus(root: Path, paragraphs: int, seed: int = 0) -> Path:
    """Split folders of blank-line separated paragraphs of made-up words (a few unknown to a BPE trained on train)."""
    rng = np.random.default_rng(seed)
    words = ["walk", "jump", "left", "right", "twice", "around", "and", "after", "look", "run", "ünïcode", "→"]
    for split, n, files in (("train", paragraphs, 3), ("valid", max(2, paragraphs // 10), 1)):
        for f in range(files):
            paras = [" ".join(rng.choice(words, rng.integers(3, 40))) for _ in range(n // files)]
            _write(root / split / f"part{f}.txt", "\n\n".join(paras) + "\n")
    _write(root / "valid" / "odd.txt", "walk ✈ twice\n")  # a character the train split never shows: <unk>
    return root


def test_token_files_are_the_same_with_one_or_two_tokenizing_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 2048)  # many chunks, so order across workers matters
    root = _corpus(tmp_path / "text", 600)
    kw = dict(vocab_size=96, min_frequency=1, tokenizer_dir=tmp_path / "tok", block_size=8)
    memory = TextFolderDataModule(root, tokenize_workers=1, **kw)
    memory.setup("fit")
    written = {}
    for workers in (1, 2):
        dm = TextFolderDataModule(root, token_dir=tmp_path / f"tokens{workers}", tokenize_workers=workers, **kw)
        dm.prepare_data()
        written[workers] = {s: (tmp_path / f"tokens{workers}" / f"{s}.bin").read_bytes() for s in ("train", "val")}
    assert written[1] == written[2]
    assert sum(p.stat().st_size for p in (root / "train").iterdir()) > 20 * 2048
    for split in ("train", "val"):
        assert written[2][split] == memory.datasets[split].stream.tobytes()
    assert np.count_nonzero(memory.datasets["val"].stream == 3) == 1  # the one <unk>, counted by the workers too
    with pytest.raises(ValueError, match="data.tokenize_workers must be >= 1"):
        TextFolderDataModule(root, tokenize_workers=0)


def test_tokenizing_holds_a_few_chunks_not_the_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 16 * 1024)
    root = _corpus(tmp_path / "text", 18000)
    text_bytes = sum(p.stat().st_size for p in (root / "train").iterdir())
    dm = TextFolderDataModule(root, tokenizer="bytes", token_dir=tmp_path / "tokens", tokenize_workers=1)
    dm.setup_tokenizer()
    tracemalloc.start()
    try:
        dm.write_token_files(dm._fingerprint())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Read whole, the text alone would be text_bytes and its ids (a Python int each) many times that.
    assert text_bytes > 2_000_000 and peak < text_bytes / 4, (peak, text_bytes)
    # Each paragraph's bytes plus bos and eos, where the file had "\n\n" between paragraphs and "\n" at its end.
    assert (tmp_path / "tokens" / "train.bin").stat().st_size == 2 * (text_bytes + 3)


def test_a_mapped_stream_pickles_as_its_file_name_and_is_mapped_again(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "text", 300)
    dm = TextFolderDataModule(root, tokenizer="bytes", token_dir=tmp_path / "tokens", block_size=16)
    dm.setup("fit")
    train = dm.datasets["train"]
    data = pickle.dumps(train)
    assert train.stream.nbytes > 50_000 and len(data) < 1000  # a spawn worker or DDP process gets the name only
    copy = pickle.loads(data)
    assert copy._stream is None  # mapped on first use, in the process that uses it
    assert len(copy) == len(train) and all(torch.equal(copy[i]["ids"], train[i]["ids"]) for i in (0, 7, len(train) - 1))
    assert isinstance(copy.stream, np.memmap) and not copy.stream.flags.writeable
    # In memory (no token_dir), or a slice of a map (not a whole file), the stream itself travels along.
    part = type(train)(train.stream[:100], 16)
    assert pickle.loads(pickle.dumps(part)).stream.tolist() == train.stream[:100].tolist()
    # The file written again under the same name (another run sharing token_dir): named, not read as other tokens.
    stale = pickle.loads(data)
    (tmp_path / "tokens" / "train.bin").write_bytes(bytes(train.stream.nbytes))
    with pytest.raises(ValueError, match=r"train.bin was written again or removed while a process still read it"):
        stale[0]
