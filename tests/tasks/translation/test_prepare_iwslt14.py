"""scripts/prepare_iwslt14.py on an archive in the real IWSLT'14 layout (metadata lines, XML test sets)."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path

from mmattn.tasks.translation import Seq2SeqTokenizer

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "prepare_iwslt14.py"


def _load():
    spec = importlib.util.spec_from_file_location("prepare_iwslt14", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_tags(lang: str, n: int) -> str:
    word = {"de": "Haus", "en": "House"}[lang]
    lines = [
        '<doc docid="1" genre="lectures">',
        "<url>http://www.ted.com/talks/x.html</url>",
        "<keywords>talks, x</keywords>",
        "<speaker>Someone</speaker>",
        "<talkid>1</talkid>",
        f"<title>{word} Title</title>",
        f"<description>{word} description</description>",
        "<reviewer href='x'>R</reviewer>",
        "<translator href='x'>T</translator>",
    ]
    lines += [f"{word} {i} ." for i in range(n)]
    return "\n".join([*lines, "</doc>"]) + "\n"


def _xml(lang: str, name: str, n: int) -> str:
    segs = "\n".join(f'<seg id="{i + 1}"> {name} {lang} {i} &amp; more </seg>' for i in range(n))
    return f'<?xml version="1.0"?>\n<mteval>\n<srcset>\n<doc docid="1">\n{segs}\n</doc>\n</srcset>\n</mteval>\n'


def _archive(path: Path) -> Path:
    files = {f"de-en/train.tags.de-en.{lang}": _train_tags(lang, 50) for lang in ("de", "en")}
    for name in ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012"):
        for lang in ("de", "en"):
            files[f"de-en/IWSLT14.{name}.de-en.{lang}.xml"] = _xml(lang, name, 3)
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_prepare_writes_the_fairseq_split_and_a_tokenizer(tmp_path: Path) -> None:
    out = tmp_path / "iwslt"
    counts = _load().prepare(_archive(tmp_path / "de-en.tgz"), out, vocab_size=200)
    # 52 text lines (title, description, 50 sentences): every 23rd is validation.
    assert counts == {"train": 50, "valid": 2, "test": 15}
    train_de = (out / "train.de").read_text().splitlines()
    assert train_de[:3] == ["haus title", "haus description", "haus 0 ."]  # metadata gone, lowercased
    assert (out / "valid.en").read_text().splitlines() == ["house 20 .", "house 43 ."]
    test_en = (out / "test.en").read_text().splitlines()
    assert test_en[0] == "ted.dev2010 en 0 & more" and test_en[-1] == "ted.tst2012 en 2 & more"
    tok = Seq2SeqTokenizer.load(out / "tokenizer")
    assert tok.joint and tok.decode_tgt(tok.encode_tgt("house 7 .")) == "house 7 ."
