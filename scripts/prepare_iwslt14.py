#!/usr/bin/env python
"""Prepare IWSLT'14 German-English (TED talks) for `experiment=transformer_iwslt14_deen`.

    python scripts/prepare_iwslt14.py /datasets/iwslt14.de-en            # download (needs internet), then prepare
    python scripts/prepare_iwslt14.py /datasets/iwslt14.de-en --archive de-en.tgz   # from an archive at hand

Writes `train/valid/test.{de,en}` (line-aligned, lowercased like the usual IWSLT'14 setup) and a joint BPE tokenizer
in `<out>/tokenizer/`. The split follows the common fairseq recipe: TED training talks without their XML metadata,
every 23rd training line held out for validation, and test = dev2010 + TEDX dev2012 + tst2010-2012 (6,750 pairs).
Pair filtering (length, ratio 1.5) happens at training time in the datamodule, where it is counted in the log.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import tarfile
from pathlib import Path

URL = "http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz"
LANGS = ("de", "en")
TEST_SETS = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")
VALID_EVERY = 23
# Metadata lines of the training files; title and description lines carry text and keep it, without the tags.
_META = re.compile(r"^\s*<(url|talkid|keywords|speaker|reviewer|translator|doc|/doc)\b")
_TEXT_TAG = re.compile(r"</?(title|description)>")
_SEG = re.compile(r'<seg id="?\d+"?>\s*(.*?)\s*</seg>')


def clean_train(text: str) -> list[str]:
    """Training lines of a `train.tags.de-en.<lang>` file: metadata dropped, title/description tags removed."""
    lines = []
    for line in text.splitlines():
        if _META.match(line):
            continue
        lines.append(_TEXT_TAG.sub("", line).strip())
    return lines


def segments(xml: str) -> list[str]:
    """The `<seg>` texts of an IWSLT XML file, in order, with entities unescaped."""
    return [html.unescape(m.group(1)) for m in _SEG.finditer(xml)]


def _member(tar: tarfile.TarFile, suffix: str) -> str:
    for m in tar.getmembers():
        if m.name.endswith(suffix):
            return tar.extractfile(m).read().decode("utf-8")  # type: ignore[union-attr]
    raise FileNotFoundError(f"the archive has no file ending in {suffix}; is it IWSLT'14 de-en ({URL})?")


def prepare(
    archive: Path, out: Path, *, lowercase: bool = True, vocab_size: int = 10000, tokenizer: bool = True
) -> dict:
    """Write train/valid/test.{de,en} (and the BPE tokenizer) under `out`; return the pair counts per split."""
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "valid": {}, "test": {}}
    with tarfile.open(archive) as tar:
        for lang in LANGS:
            lines = clean_train(_member(tar, f"train.tags.de-en.{lang}"))
            splits["valid"][lang] = [line for i, line in enumerate(lines, 1) if i % VALID_EVERY == 0]
            splits["train"][lang] = [line for i, line in enumerate(lines, 1) if i % VALID_EVERY]
            splits["test"][lang] = [
                s for name in TEST_SETS for s in segments(_member(tar, f"IWSLT14.{name}.de-en.{lang}.xml"))
            ]
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, sides in splits.items():
        if len(sides["de"]) != len(sides["en"]):
            raise ValueError(f"{split}: {len(sides['de'])} German but {len(sides['en'])} English lines in {archive}")
        counts[split] = len(sides["de"])
        for lang, lines in sides.items():
            text = "".join((line.lower() if lowercase else line) + "\n" for line in lines)
            (out / f"{split}.{lang}").write_text(text, encoding="utf-8")
    if tokenizer:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from mmattn.tasks.translation import Seq2SeqTokenizer
        from mmattn.tasks.translation.text import read_parallel

        src, tgt = read_parallel(out / "train.de", out / "train.en")
        Seq2SeqTokenizer.train(src, tgt, vocab_size=vocab_size, joint=True).save(out / "tokenizer")
    return counts


def main(argv: list[str] | None = None) -> None:
    """Command line: download when no archive is given, prepare, print the counts."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="output folder (data.root of the experiment)")
    p.add_argument("--archive", type=Path, default=None, help=f"de-en.tgz already downloaded (default: fetch {URL})")
    p.add_argument("--keep-case", action="store_true", help="do not lowercase")
    p.add_argument("--vocab-size", type=int, default=10000, help="joint BPE vocabulary size")
    p.add_argument("--no-tokenizer", action="store_true", help="write the text only")
    args = p.parse_args(argv)
    archive = args.archive
    if archive is None:
        from torchvision.datasets.utils import download_url

        download_url(URL, str(args.out), filename="de-en.tgz")
        archive = args.out / "de-en.tgz"
    if not archive.is_file():
        raise SystemExit(f"archive {archive} not found; download {URL} or drop --archive")
    counts = prepare(
        archive, args.out, lowercase=not args.keep_case, vocab_size=args.vocab_size, tokenizer=not args.no_tokenizer
    )
    print(" ".join(f"{split}={n}" for split, n in counts.items()), f"-> {args.out}")


if __name__ == "__main__":
    main()
