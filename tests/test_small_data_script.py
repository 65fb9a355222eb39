"""scripts/small_data.py: quick real runs of both benchmarks (the ViT recipe and the SVM on real digits written as
PNG files; the LM recipe and xz on a text file), and the measures they rest on: bits per byte and the split."""

from __future__ import annotations

import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest
from mmattn_testing import is_picture

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "small_data.py"
sys.path.insert(0, str(SCRIPT.parent))
import small_data  # noqa: E402  (scripts/ is no package)

PARAGRAPH = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness,\n"
    "it was the epoch of belief, it was the epoch of incredulity, it was the season of Light.\n\n"
)


@pytest.mark.slow
def test_quick_vision_and_text_runs_write_json_markdown_and_png(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"{i}. {PARAGRAPH}" for i in range(60)))
    common = ["--quick", "--threads", "1"]
    vision = [sys.executable, str(SCRIPT), "vision", "--out", str(tmp_path / "v"), *common]
    lm = [sys.executable, str(SCRIPT), "text", "--text", str(text), "--out", str(tmp_path / "t"), *common]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in (vision, lm)]
    (v_out, v_err), (t_out, t_err) = (p.communicate(timeout=300) for p in procs)
    assert procs[0].returncode == 0, v_err[-3000:]
    assert procs[1].returncode == 0, t_err[-3000:]

    # The digits, written once as real PNG files: 1,797 in a stratified 80/20 split, 10 % of the rest for validation.
    data = tmp_path / "v" / "data" / "digits_seed0"
    sizes = json.loads((data / "complete").read_text())
    assert (sizes["train"] + sizes["val"], sizes["test"]) == (1437, 360)
    assert len(list((data / "test").glob("*/*.png"))) == 360
    result = json.loads((tmp_path / "v" / "vision.json").read_text())
    run = result["runs"]["0"]
    assert 0 <= run["vit"]["test_acc"] <= 1 and run["svm"]["sizes"] == {k: sizes[k] for k in ("train", "val", "test")}
    assert run["svm"]["test_acc"] > 0.95  # the baseline is real: an RBF SVM reads these digits
    assert v_out.startswith("| split seed | ViT recipe test acc | RBF SVM test acc |")
    assert is_picture(tmp_path / "v" / "vision.png")

    result = json.loads((tmp_path / "t" / "text.json").read_text())
    test_bytes = (tmp_path / "t" / "data" / "test" / "corpus.txt").read_bytes()
    assert result["lm"]["bytes"] == len(test_bytes) and result["lm"]["bits_per_byte"] > 0
    assert "experiment=lm_small_corpus" in result["overrides"]
    assert t_out.splitlines()[2].startswith("| LM recipe (`experiment=lm_small_corpus`) |")
    assert is_picture(tmp_path / "t" / "text.png")


def test_xz_cost_given_the_training_text_and_the_paragraph_split(tmp_path: Path) -> None:
    train = PARAGRAPH.encode() * 50
    # Text seen in training costs xz almost nothing; unseen random-looking text costs about its entropy.
    assert small_data.xz_bits_per_byte(train, PARAGRAPH.encode() * 3) < 0.5
    noise = lzma.compress(b"".join(bytes([i % 251]) * (i % 7 + 1) for i in range(5000)))  # incompressible bytes
    assert small_data.xz_bits_per_byte(train, noise) > 7.5
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"{i} {PARAGRAPH}" for i in range(100)))
    root = small_data.split_text(corpus, tmp_path / "split")
    parts = [(root / s / "c.txt").read_bytes() for s in ("train", "valid", "test")]
    assert b"".join(parts) == corpus.read_bytes()
    assert all(p.endswith(b"\n\n") for p in parts[:2]) and 0.88 < len(parts[0]) / len(b"".join(parts)) < 0.93
