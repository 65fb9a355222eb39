#!/usr/bin/env python
"""Small-data benchmarks: our recipes against the classical baseline a practitioner would try first, side by side.

    python scripts/small_data.py vision                      # ViT recipe vs RBF SVM on scikit-learn's digits (~3 min)
    python scripts/small_data.py vision --seeds 0,1,2        # three splits, both methods on each
    python scripts/small_data.py vision --root /data/scans --img-size 32 -- model.patch_size=8   # your ImageFolder
    python scripts/small_data.py text --text corpus.txt      # LM recipe vs xz -9, bits per byte of held-out text
    python scripts/small_data.py vision --quick              # tiny runs: checks the plumbing in seconds

`vision` writes scikit-learn's 1,797 handwritten digits (8 x 8 grayscale scans, bundled with scikit-learn) as PNG
files in an ImageFolder tree, `root/{train,val,test}/<class>/`, stratified by each of `--seeds` (20 % test, 10 % of
the rest validation), or takes your tree (`--root`). It trains `experiment=vit_small_data` on it with
`mmattn-train` at `--img-size` (the best validation checkpoint is tested), and fits scikit-learn's RBF SVM on the
files' own pixels (8 x 8 for the digits; what suits it best): C and gamma chosen by 5-fold cross-validation on
train + val (what the ViT sees for training and model selection), then refit and scored on test. It writes
`vision.{json,md,png}`: the table, and the ViT's validation accuracy per epoch against the SVM's test accuracy.

`text` splits a text file at paragraph boundaries into train/valid/test (90/5/5 %; or takes a folder already
split), trains `experiment=lm_small_corpus` on it and measures bits per byte on the test split: the model's summed
negative log-likelihood of every test token, in bits, over the test files' raw UTF-8 bytes (so byte and BPE
tokenizers compare fairly), against `xz -9`'s cost of the test text given the training text: the size of
xz(train + test) minus that of xz(train), in bits per test byte. It writes `text.{json,md,png}`.

Progress goes to stderr; the markdown table to stdout.
"""

from __future__ import annotations

import argparse
import json
import lzma
import math
import time
from pathlib import Path
from typing import Any

import cli_runs
import numpy as np
from cli_runs import cli, env_with_threads, log, pyplot

QUICK_VISION = ["trainer.max_epochs=2", "model.depth=1", "model.dim=32", "model.num_heads=2"]
QUICK_TEXT = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
    "model.depth=1",
    "model.dim=32",
    "model.num_heads=2",
    "data.vocab_size=300",
    "model.vocab_size=300",
    "data.block_size=32",
]


def _train(overrides: list[str], run_dir: Path, log_file: Path, threads: int | None) -> float:
    """`mmattn-train <overrides>` into `run_dir`, its output into `log_file`; return its wall time in seconds."""
    cmd = [cli("mmattn-train"), *overrides, f"hydra.run.dir={run_dir}"]
    return cli_runs.run(cmd, env_with_threads(threads), log_file)


def _metric_curve(run_dir: Path, key: str) -> list[float]:
    """The per-epoch values of `key` in the run's CSV log."""
    import csv

    files = sorted(run_dir.glob("csv/version_*/metrics.csv"))
    if not files:
        return []
    with files[-1].open() as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


# --------------------------------------------------------------------------------------------------- vision


def write_digits(root: Path, seed: int) -> Path:
    """scikit-learn's digits as 8 x 8 grayscale PNGs in `root/{train,val,test}/<digit>/` (written once per seed)."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    done = root / "complete"
    if done.exists():
        return root
    images, labels = load_digits(return_X_y=True)
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=0.2, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=0.1, stratify=labels[rest], random_state=seed)
    for split, ids in (("train", train), ("val", val), ("test", test)):
        for i in ids:
            folder = root / split / str(labels[i])
            folder.mkdir(parents=True, exist_ok=True)
            # Pixel values 0..16 (the scans' 4 x 4-block counts) spread over 0..255.
            pixels = np.rint(images[i].reshape(8, 8) * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{i:04d}.png")
    done.write_text(json.dumps({"seed": seed, "train": len(train), "val": len(val), "test": len(test)}))
    return root


def _pixels(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image of `root/split` as grayscale pixels in [0, 1] at its own size, its labels and the class names.

    Raises:
        ValueError: The images differ in size (the SVM needs one feature vector length).
    """
    from PIL import Image

    classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
    features, labels, sizes = [], [], set()
    for label, name in enumerate(classes):
        for path in sorted((root / split / name).iterdir()):
            img = Image.open(path).convert("L")
            sizes.add(img.size)
            features.append(np.asarray(img, dtype=np.float32).ravel() / 255)
            labels.append(label)
    if len(sizes) > 1:
        raise ValueError(f"{root / split} holds images of sizes {sorted(sizes)}; the SVM baseline needs one size")
    return np.stack(features), np.asarray(labels), classes


def svm_baseline(root: Path, quick: bool) -> dict[str, Any]:
    """RBF SVM on the files' own pixels: C and gamma by 5-fold CV on train + val, refit there, scored on test."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    start = time.perf_counter()
    x_train, y_train, classes = _pixels(root, "train")
    x_val, y_val, _ = _pixels(root, "val")
    x_test, y_test, test_classes = _pixels(root, "test")
    if test_classes != classes:
        raise ValueError(f"{root}/test holds classes {test_classes}, {root}/train {classes}; they must agree")
    grid = {"C": [1, 10], "gamma": ["scale"]} if quick else {"C": [1, 3, 10, 30, 100], "gamma": ["scale", 0.01, 0.03]}
    search = GridSearchCV(SVC(kernel="rbf"), grid, cv=5, n_jobs=1)
    search.fit(np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]))
    return {
        "test_acc": float(search.score(x_test, y_test)),
        "cv_acc": float(search.best_score_),
        "params": {k: v for k, v in search.best_params_.items()},
        "seconds": round(time.perf_counter() - start, 1),
        "sizes": {"train": len(y_train), "val": len(y_val), "test": len(y_test)},
    }


def run_vision(args: argparse.Namespace) -> dict[str, Any]:
    """Train the ViT recipe and fit the SVM on each seed's split; return the results (also written as JSON)."""
    out = args.out.expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"dataset": str(args.root) if args.root else "sklearn digits", "runs": {}}
    for seed in args.seeds:
        if args.root:
            root = args.root.expanduser().absolute()
            classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        else:
            root = write_digits(out / "data" / f"digits_seed{seed}", seed)
            classes = [str(d) for d in range(10)]
        run_dir = out / f"vit_seed{seed}"
        overrides = [
            "experiment=vit_small_data",
            f"data.root={root}",
            f"data.num_classes={len(classes)}",
            f"data.img_size={args.img_size}",
            f"seed={seed}",
            *(QUICK_VISION if args.quick else []),
            *args.override,
        ]
        log(f"[seed {seed}] training the ViT recipe -> {run_dir}")
        seconds = _train(overrides, run_dir, out / f"vit_seed{seed}.log", args.threads)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        vit = {
            "test_acc": metrics["test/acc"],
            "val_acc_best": metrics.get("val/acc_best"),
            "seconds": round(seconds, 1),
            "val_curve": _metric_curve(run_dir, "val/acc"),
            "overrides": overrides,
        }
        log(f"[seed {seed}] ViT test accuracy {vit['test_acc']:.4f} in {seconds / 60:.1f} min; fitting the SVM")
        svm = svm_baseline(root, args.quick)
        log(f"[seed {seed}] SVM test accuracy {svm['test_acc']:.4f} ({svm['params']})")
        results["runs"][str(seed)] = {"vit": vit, "svm": svm}
        write_vision(results, out)
    return results


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def vision_markdown(results: dict[str, Any]) -> str:
    """One row per seed, then the mean: test accuracy of both, the gap, the ViT's training time."""
    lines = [
        "| split seed | ViT recipe test acc | RBF SVM test acc | ViT - SVM | ViT train min | SVM C, gamma |",
        "|---|---|---|---|---|---|",
    ]
    for seed, run in results["runs"].items():
        vit, svm = run["vit"], run["svm"]
        params = f"{svm['params']['C']}, {svm['params']['gamma']}"
        gap = round(vit["test_acc"] - svm["test_acc"], 6) + 0.0  # + 0.0: no "-0.0000" for a tie
        lines.append(
            f"| {seed} | {vit['test_acc']:.4f} | {svm['test_acc']:.4f} | {gap:+.4f} "
            f"| {vit['seconds'] / 60:.1f} | {params} |"
        )
    runs = list(results["runs"].values())
    if len(runs) > 1:
        v = _mean([r["vit"]["test_acc"] for r in runs])
        s = _mean([r["svm"]["test_acc"] for r in runs])
        minutes = _mean([r["vit"]["seconds"] / 60 for r in runs])
        lines.append(f"| mean | {v:.4f} | {s:.4f} | {v - s:+.4f} | {minutes:.1f} | |")
    return "\n".join(lines) + "\n"


def write_vision(results: dict[str, Any], out: Path) -> None:
    """vision.json, vision.md and vision.png (validation accuracy per epoch against the SVM's test accuracy)."""
    (out / "vision.json").write_text(json.dumps(results, indent=2))
    (out / "vision.md").write_text(vision_markdown(results))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (seed, run) in enumerate(results["runs"].items()):
        colour = f"C{i}"
        curve = run["vit"]["val_curve"]
        ax.plot(range(1, len(curve) + 1), curve, color=colour, label=f"ViT recipe, val (split {seed})")
        ax.axhline(run["svm"]["test_acc"], color=colour, linestyle="--", label=f"RBF SVM, test (split {seed})")
        ax.plot([len(curve)], [run["vit"]["test_acc"]], "o", color=colour)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.8, 1.0)
    ax.set_title(f"{results['dataset']}: ViT recipe vs RBF SVM (dot = ViT test)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "vision.png", dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------- text


def split_text(path: Path, root: Path) -> Path:
    """`path` cut at paragraph boundaries into `root/{train,valid,test}/<name>` (90/5/5 % of its bytes)."""
    data = path.read_bytes()

    def cut(fraction: float) -> int:
        at = data.find(b"\n\n", int(len(data) * fraction))
        if at < 0:
            raise ValueError(f"{path} has no blank line after {fraction:.0%} of its bytes; split it yourself")
        return at + 2

    first, second = cut(0.9), cut(0.95)
    for split, part in (("train", data[:first]), ("valid", data[first:second]), ("test", data[second:])):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / split / path.name).write_bytes(part)
    return root


def _split_bytes(root: Path, split: str) -> bytes:
    """The .txt files of `root/split` (sorted, as the datamodule reads them), concatenated."""
    files = sorted((root / split).rglob("*.txt"))
    if not files:
        raise ValueError(f"{root / split} holds no .txt files")
    return b"".join(f.read_bytes() for f in files)


def xz_bits_per_byte(train: bytes, test: bytes) -> float:
    """`xz -9`'s cost of `test` given `train`: |xz(train + test)| - |xz(train)|, in bits per byte of `test`."""
    with_test = len(lzma.compress(train + test, preset=9))
    alone = len(lzma.compress(train, preset=9))
    return 8 * (with_test - alone) / len(test)


def model_bits_per_byte(ckpt: Path, root: Path, documents: str) -> dict[str, float]:
    """The checkpoint's summed NLL of the test split (tokenized as in training), in bits per raw test byte."""
    import torch

    import mmattn
    from mmattn.tasks.text.corpus import read_documents

    module = mmattn.load(ckpt)
    tok = module.tokenizer
    files = sorted((root / "test").rglob("*.txt"))
    ids: list[int] = []
    for doc in read_documents(files, documents):
        ids += [tok.bos_id, *tok.encode(doc), tok.eos_id]
    stream = torch.tensor(ids)
    block = module.net.context_length
    nats = 0.0
    with torch.inference_mode():
        # Consecutive windows share one token, so every token after the first is predicted once.
        for start in range(0, len(stream) - 1, block):
            window = stream[start : start + block + 1]
            logits = module.net(window[None, :-1])
            logits = logits if torch.is_tensor(logits) else logits[0]
            nats += torch.nn.functional.cross_entropy(logits[0].float(), window[1:], reduction="sum").item()
    test_bytes = len(_split_bytes(root, "test"))
    return {"bits_per_byte": nats / math.log(2) / test_bytes, "tokens": len(ids), "bytes": test_bytes}


def run_text(args: argparse.Namespace) -> dict[str, Any]:
    """Train the LM recipe, score it and xz on the test split; return the results (also written as JSON)."""
    out = args.out.expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    source = args.text.expanduser().absolute()
    root = source if source.is_dir() else split_text(source, out / "data")
    run_dir = out / "lm"
    overrides = [
        "experiment=lm_small_corpus",
        f"data.root={root}",
        f"seed={args.seed}",
        *(QUICK_TEXT if args.quick else []),
        *args.override,
    ]
    log(f"training the LM recipe on {root} -> {run_dir}")
    seconds = _train(overrides, run_dir, out / "lm.log", args.threads)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    documents = _run_option(run_dir, "documents")
    log(f"trained in {seconds / 60:.1f} min; scoring the test split")
    lm = model_bits_per_byte(run_dir / "checkpoints" / "last.ckpt", root, documents)
    train, test = _split_bytes(root, "train"), _split_bytes(root, "test")
    xz = xz_bits_per_byte(train, test)
    results = {
        "text": str(source),
        "bytes": {"train": len(train), "test": len(test)},
        "lm": {**lm, "seconds": round(seconds, 1), "val_curve": _metric_curve(run_dir, "val/loss"), "metrics": metrics},
        "xz": {"bits_per_byte": xz},
        "overrides": overrides,
    }
    write_text(results, out)
    return results


def _run_option(run_dir: Path, key: str) -> str:
    """`data.<key>` of the run's saved Hydra config."""
    from omegaconf import OmegaConf

    return str(OmegaConf.load(run_dir / ".hydra" / "config.yaml").data[key])


def text_markdown(results: dict[str, Any]) -> str:
    """Bits per byte of the test split: the LM recipe and xz -9 given the training text."""
    lm, xz = results["lm"], results["xz"]
    return (
        "| method | bits per byte (test) | minutes |\n|---|---|---|\n"
        f"| LM recipe (`experiment=lm_small_corpus`) | {lm['bits_per_byte']:.3f} | {lm['seconds'] / 60:.1f} |\n"
        f"| `xz -9` given the training text | {xz['bits_per_byte']:.3f} | |\n"
    )


def write_text(results: dict[str, Any], out: Path) -> None:
    """text.json, text.md and text.png (validation bits per token per epoch, test bits per byte against xz)."""
    (out / "text.json").write_text(json.dumps(results, indent=2))
    (out / "text.md").write_text(text_markdown(results))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 4))
    names = ["LM recipe", "xz -9"]
    values = [results["lm"]["bits_per_byte"], results["xz"]["bits_per_byte"]]
    ax.bar(names, values, color=["C0", "C7"])
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.3f}", ha="center", va="bottom")
    ax.set_ylabel("bits per byte of held-out text (lower is better)")
    ax.set_title(Path(results["text"]).name)
    fig.tight_layout()
    fig.savefig(out / "text.png", dpi=120)
    plt.close(fig)


def main() -> None:
    """Parse the command line and run one benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    vision = sub.add_parser("vision", help="ViT recipe vs RBF SVM on small real images")
    vision.add_argument("--root", type=Path, default=None, help="an ImageFolder tree root/{train,val,test}/<class>/")
    vision.add_argument(
        "--img-size", type=int, default=16, help="image side the ViT sees (the SVM reads the files' own pixels)"
    )
    vision.add_argument(
        "--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0], help="split seeds, e.g. 0,1,2"
    )
    vision.add_argument("--out", type=Path, default=Path("outputs/small_data"))
    text = sub.add_parser("text", help="LM recipe vs xz -9 in bits per byte of held-out text")
    text.add_argument("--text", type=Path, required=True, help="a UTF-8 text file, or a folder with train/valid/test")
    text.add_argument("--seed", type=int, default=0)
    text.add_argument("--out", type=Path, default=Path("outputs/small_data"))
    for p in (vision, text):
        p.add_argument("--quick", action="store_true", help="tiny runs that check the plumbing")
        p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the training run")
        p.add_argument("override", nargs="*", help="extra Hydra overrides of the training run (after --)")
    args = parser.parse_args()
    if args.bench == "vision":
        results = run_vision(args)
        print(vision_markdown(results), end="")
    else:
        results = run_text(args)
        print(text_markdown(results), end="")


if __name__ == "__main__":
    main()
