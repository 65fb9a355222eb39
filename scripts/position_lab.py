#!/usr/bin/env python
"""Position-encoding benchmarks: train the same model once per position scheme and compare what generalises.

    python scripts/position_lab.py scan --split length            # SCAN length split, every scheme (~1 h on 2 cores)
    python scripts/position_lab.py scan --split add_jump --schemes rotary,t5
    python scripts/position_lab.py scan --quick                   # tiny runs: checks the plumbing in seconds
    python scripts/position_lab.py resolution --family vit        # shapes at 32 px, tested at 24/32/48/64 px
    python scripts/position_lab.py resolution --family ast        # DTMF at 1 s, tested at 0.5/1/2 s
    python scripts/position_lab.py merge a/scan_length.json b/scan_length.json --out all   # runs made apart

`scan` trains `experiment=scan_length` (the translation demo's Transformer) with `data.split=<split>` for each
scheme, as a user runs it (`mmattn-train` in a subprocess, one run directory each), in up to three variants:

- `eos`: the usual model, which must decide where to stop: test exact match of its own outputs;
- `eos_oracle`: the same checkpoint decoded with every output forced to its reference's length (`mmattn-eval
  decoding.oracle_length=true`), which separates "what to say" from "when to stop" (Newman et al., 2020);
- `no_eos`: a model trained without EOS in its loss (`module.predict_eos=false`), decoded at the oracle length.

It writes `<out>/scan_<split>.json` (every run's metrics, wall time and overrides), `scan_<split>.md` (the table) and
`scan_<split>.png` (test exact match per scheme and variant). Progress goes to stderr; the markdown table to stdout.

`resolution` trains the family's demo (`vision_demo`: shapes at 32 px; `audio_demo`: DTMF clips of 1 s) once per
grid scheme (`model.pos_embed`) and tests each checkpoint on test sets made at other sizes (`mmattn-eval data=...`
with the size overrides, each set generated in its own data folder), writing `resolution_<family>.{json,md,png}`.

`merge` joins result files of the same benchmark (schemes run as separate jobs) into one set of outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cli_runs import cli, env_with_threads, log, pyplot, run

# Scheme name -> the model overrides that select it. NoPE needs an encoder scheme of its own (a bidirectional
# encoder without positions sees a bag of tokens): it gets rotary there.
SCAN_SCHEMES: dict[str, list[str]] = {
    "sinusoidal": ["model.positions=sinusoidal"],
    "learned": ["model.positions=learned", "model.max_positions=128"],
    "rotary": ["model.positions=rotary"],
    "alibi": ["model.positions=alibi"],
    "t5": ["model.positions=t5"],
    "none": ["model.positions=none", "model.encoder_positions=rotary"],
    "random_sinusoidal": ["model.positions=sinusoidal", "model.random_positions=128"],
    "random_rotary": ["model.positions=rotary", "model.random_positions=128"],
}
VARIANTS = ("eos", "eos_oracle", "no_eos")
QUICK = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=2",
    "model.dim=32",
    "model.num_heads=2",
    "model.encoder_depth=1",
    "model.decoder_depth=1",
]


def _choose(value: str, allowed: Any, flag: str) -> list[str]:
    """The comma-separated choices of `flag`, checked."""
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(allowed))
    if unknown or not chosen:
        raise SystemExit(f"{flag}: unknown {unknown}; choose from {','.join(allowed)}")
    return chosen


def _best_checkpoint(run_dir: Path) -> Path:
    """The selected checkpoint (the one that is not last.ckpt), else last.ckpt."""
    ckpts = sorted(p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt")
    return ckpts[-1] if ckpts else run_dir / "checkpoints" / "last.ckpt"


def run_scan(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate every scheme and variant; return the results (also written as JSON)."""
    schemes = _choose(args.schemes, SCAN_SCHEMES, "--schemes")
    variants = _choose(args.variants, VARIANTS, "--variants")
    out = args.out.expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    env = env_with_threads(args.threads)
    base = [
        "experiment=scan_length",
        f"data.split={args.split}",
        f"paths.data_dir={args.data_dir.expanduser().absolute()}",
        f"trainer.max_epochs={args.epochs}",
        f"seed={args.seed}",
        *(QUICK if args.quick else []),
        *args.override,
    ]
    results: dict[str, Any] = {
        "split": args.split,
        "epochs": args.epochs,
        "seed": args.seed,
        "quick": args.quick,
        "threads": args.threads or os.cpu_count(),
        "variants": variants,
        "runs": {},
    }
    for scheme in schemes:
        entry: dict[str, Any] = {"overrides": SCAN_SCHEMES[scheme]}
        trained: dict[str, Path] = {}
        for variant in variants:
            train_variant = "no_eos" if variant == "no_eos" else "eos"
            if train_variant not in trained:
                run_dir = out / args.split / scheme / train_variant
                extra = (
                    ["module.predict_eos=false", "module.decoding.oracle_length=true"] if variant == "no_eos" else []
                )
                cmd = [
                    cli("mmattn-train"),
                    *base,
                    *SCAN_SCHEMES[scheme],
                    *extra,
                    f"task_name=scan_{args.split}_{scheme}_{train_variant}",
                    f"hydra.run.dir={run_dir}",
                ]
                log(f"[{scheme}] training ({train_variant}) -> {run_dir}")
                seconds = run(cmd, env, out / f"{args.split}_{scheme}_{train_variant}.log")
                metrics = json.loads((run_dir / "metrics.json").read_text())
                entry[f"train_{train_variant}"] = {"seconds": round(seconds, 1), "metrics": metrics}
                trained[train_variant] = run_dir
            run_dir = trained[train_variant]
            if variant == "eos_oracle":
                eval_dir = run_dir / "oracle_eval"
                cmd = [
                    cli("mmattn-eval"),
                    f"ckpt_path={_best_checkpoint(run_dir)}",
                    "decoding.oracle_length=true",
                    f"paths.data_dir={args.data_dir.expanduser().absolute()}",
                    *(["+trainer.limit_test_batches=2"] if args.quick else []),
                    f"hydra.run.dir={eval_dir}",
                ]
                log(f"[{scheme}] oracle-length evaluation")
                run(cmd, env, out / f"{args.split}_{scheme}_eos_oracle.log")
                metrics = json.loads((eval_dir / "metrics.json").read_text())
            else:
                metrics = entry[f"train_{train_variant}"]["metrics"]
            entry[variant] = {"test_exact": metrics.get("test/exact"), "val_exact": metrics.get("val/exact_best")}
            log(f"[{scheme}] {variant}: test exact {entry[variant]['test_exact']}")
        entry["minutes"] = round(sum(v["seconds"] for k, v in entry.items() if k.startswith("train_")) / 60, 2)
        results["runs"][scheme] = entry
        write_outputs(results, out)  # after every scheme: an interrupted benchmark keeps what it measured
    return results


def markdown(results: dict[str, Any]) -> str:
    """The SCAN results as a markdown table, one row per scheme."""
    variants = results["variants"]
    names = {
        "eos": "test exact (own EOS)",
        "eos_oracle": "test exact (oracle length)",
        "no_eos": "test exact (-EOS, oracle length)",
    }
    head = ["scheme", *(names[v] for v in variants), "val exact", "train minutes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scheme, entry in results["runs"].items():
        cells = [f"{entry[v]['test_exact']:.3f}" if entry.get(v) else "" for v in variants]
        val = entry.get("eos", entry.get("no_eos", {})).get("val_exact")
        cells += [f"{val:.3f}" if val is not None else "", f"{entry['minutes']:.1f}"]
        lines.append(f"| {scheme} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def picture(results: dict[str, Any], path: Path) -> None:
    """Grouped bars: test exact match per scheme (groups) and variant (bars), the 0.5 target as a line."""
    plt = pyplot()
    variants = results["variants"]
    schemes = list(results["runs"])
    width = 0.8 / len(variants)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(schemes) + 2), 4), layout="constrained")
    for i, variant in enumerate(variants):
        values = [(results["runs"][s].get(variant) or {}).get("test_exact") or 0.0 for s in schemes]
        xs = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(schemes))]
        bars = ax.bar(xs, values, width, label=variant)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axhline(0.5, color="grey", ls="--", lw=0.8, label="target 0.50")
    ax.set_xticks(range(len(schemes)), schemes, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test exact match")
    ax.set_title(f"SCAN {results['split']} split: test exact match per position scheme", fontsize=10)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(results: dict[str, Any], out: Path) -> Path:
    """JSON, markdown and PNG of the results so far (each written whole, then renamed); returns the markdown file."""
    if "family" in results:
        stem, table, draw = out / f"resolution_{results['family']}", resolution_markdown, resolution_picture
    else:
        stem, table, draw = out / f"scan_{results['split']}", markdown, picture
    out.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(results, indent=2) + "\n"), (".md", table(results))):
        tmp = stem.with_suffix(suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(stem.with_suffix(suffix))
    draw(results, stem.with_suffix(".png"))
    return stem.with_suffix(".md")


# ------------------------------------------------------------------------------------------------- resolution

# Per family: the preset trained, the data option tested, the training size, the test sizes, and the overrides that
# make data of a size (each size is generated in its own data folder: a generated set is written once per settings).
RESOLUTION: dict[str, dict[str, Any]] = {
    "vit": {"experiment": "vision_demo", "data": "shapes", "unit": "px", "base": 32, "sizes": [24, 32, 48, 64]},
    "ast": {"experiment": "audio_demo", "data": "dtmf", "unit": "s", "base": 1.0, "sizes": [0.5, 1.0, 2.0]},
}
GRID_SCHEMES = ("learned", "sincos", "rotary2d", "rotary2d_mixed", "none")
QUICK_CLASSIFIER = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1"]


def _size_overrides(family: str, size: float) -> list[str]:
    """Data overrides for test inputs of `size` (pixels, or seconds at the features' 100 frames a second)."""
    if family == "vit":
        return [f"data.img_size={int(size)}"]
    return [f"data.clip_seconds={size}", f"data.target_length={round(100 * size)}"]


def run_resolution(args: argparse.Namespace) -> dict[str, Any]:
    """Train each grid scheme at the family's base size, test it at every size; return the results."""
    spec = RESOLUTION[args.family]
    schemes = _choose(args.schemes, GRID_SCHEMES, "--schemes")
    cast = float if spec["unit"] == "s" else int
    sizes = [cast(v) for v in args.sizes.split(",")] if args.sizes else spec["sizes"]
    out = args.out.expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    data_root = args.data_dir.expanduser().absolute()
    env = env_with_threads(args.threads)
    stem = f"resolution_{args.family}"
    # Overrides of the data describe the dataset, so the test sets of every size are made with them too.
    data_overrides = [o for o in args.override if o.lstrip("+").startswith("data.")]
    results: dict[str, Any] = {
        "family": args.family,
        "experiment": spec["experiment"],
        "base": spec["base"],
        "unit": spec["unit"],
        "sizes": sizes,
        "seed": args.seed,
        "quick": args.quick,
        "runs": {},
    }
    for scheme in schemes:
        run_dir = out / stem / scheme
        cmd = [
            cli("mmattn-train"),
            f"experiment={spec['experiment']}",
            f"model.pos_embed={scheme}",
            f"paths.data_dir={data_root}",
            f"seed={args.seed}",
            *(QUICK_CLASSIFIER if args.quick else []),
            *args.override,
            f"task_name={stem}_{scheme}",
            f"hydra.run.dir={run_dir}",
        ]
        log(f"[{scheme}] training at {spec['base']} {spec['unit']} -> {run_dir}")
        seconds = run(cmd, env, out / f"{stem}_{scheme}.log")
        entry: dict[str, Any] = {"train_seconds": round(seconds, 1), "test_acc": {}}
        for size in sizes:
            where = data_root if size == spec["base"] else data_root / f"{stem}_{size}"
            eval_dir = run_dir / f"eval_{size}"
            cmd = [
                cli("mmattn-eval"),
                f"ckpt_path={_best_checkpoint(run_dir)}",
                f"data={spec['data']}",
                *data_overrides,
                *_size_overrides(args.family, size),
                f"paths.data_dir={where}",
                *(["+trainer.limit_test_batches=1"] if args.quick else []),
                f"hydra.run.dir={eval_dir}",
            ]
            run(cmd, env, out / f"{stem}_{scheme}_{size}.log")
            value = json.loads((eval_dir / "metrics.json").read_text()).get("test/acc")
            entry["test_acc"][str(size)] = value
            log(f"[{scheme}] {size} {spec['unit']}: test acc {value}")
        results["runs"][scheme] = entry
        write_outputs(results, out)
    return results


def resolution_markdown(results: dict[str, Any]) -> str:
    """Test accuracy per scheme (rows) and test size (columns); the training size is marked."""
    unit, base = results["unit"], results["base"]
    head = ["scheme", *(f"{s} {unit}" + (" (trained)" if s == base else "") for s in results["sizes"])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scheme, entry in results["runs"].items():
        cells = [entry["test_acc"].get(str(s)) for s in results["sizes"]]
        lines.append(f"| {scheme} | " + " | ".join("" if v is None else f"{v:.3f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def resolution_picture(results: dict[str, Any], path: Path) -> None:
    """Test accuracy against test size, one line per scheme, the training size marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for scheme, entry in results["runs"].items():
        sizes = [s for s in results["sizes"] if entry["test_acc"].get(str(s)) is not None]
        ax.plot(sizes, [entry["test_acc"][str(s)] for s in sizes], "o-", label=scheme)
    ax.axvline(results["base"], color="grey", ls="--", lw=0.8, label="trained at")
    ax.set_xlabel(f"test size ({results['unit']})")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{results['experiment']}: accuracy at other sizes per position scheme", fontsize=10)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def merge(files: list[Path], out: Path) -> Path:
    """Join result files of one benchmark (the same split or family) into one set of outputs."""
    merged: dict[str, Any] | None = None
    for f in files:
        part = json.loads(Path(f).read_text())
        if merged is None:
            merged = part
            continue
        key = "family" if "family" in part else "split"
        if part.get(key) != merged.get(key):
            raise SystemExit(
                f"{f} holds {key} {part.get(key)!r}, the first file {merged.get(key)!r}: merge one at once"
            )
        merged["runs"].update(part["runs"])
    if merged is None:
        raise SystemExit("merge: no files given")
    if "split" in merged:
        merged["variants"] = [v for v in VARIANTS if any(v in run for run in merged["runs"].values())]
    return write_outputs(merged, out.expanduser().absolute())


def _run_options(parser: argparse.ArgumentParser, quick: str, override: str) -> None:
    """Options every training benchmark takes."""
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of every run (default: all cores)")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MMATTN_DATA_DIR", "data")))
    parser.add_argument("--out", type=Path, default=Path("results/position_lab"))
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("override", nargs="*", help=override)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="bench", required=True)
    scan = sub.add_parser("scan", help="SCAN length / add-jump split per position scheme")
    scan.add_argument("--split", default="length", choices=("length", "add_jump", "simple"))
    scan.add_argument("--schemes", default=",".join(SCAN_SCHEMES), help=f"comma-separated of {','.join(SCAN_SCHEMES)}")
    scan.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated of {','.join(VARIANTS)}")
    scan.add_argument("--epochs", type=int, default=12)
    _run_options(
        scan,
        "tiny models and 2 batches: checks the plumbing only",
        "extra Hydra overrides of every run, e.g. model.dim=64",
    )
    res = sub.add_parser("resolution", help="ViT / AST trained at one size, tested at others, per grid scheme")
    res.add_argument("--family", default="vit", choices=tuple(RESOLUTION))
    res.add_argument("--schemes", default=",".join(GRID_SCHEMES), help=f"comma-separated of {','.join(GRID_SCHEMES)}")
    res.add_argument("--sizes", default=None, help="test sizes, e.g. 24,32,48,64 (px) or 0.5,1,2 (s)")
    _run_options(
        res,
        "1 epoch of 2 batches: checks the plumbing only",
        "extra Hydra overrides of every training (data.* also of the tests)",
    )
    mer = sub.add_parser("merge", help="join result files of one benchmark")
    mer.add_argument("files", nargs="+", type=Path)
    mer.add_argument("--out", type=Path, default=Path("results/position_lab"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the chosen benchmark and print its markdown table."""
    args = parse_args(argv)
    if args.bench == "merge":
        table = merge(args.files, args.out)
    else:
        results = run_scan(args) if args.bench == "scan" else run_resolution(args)
        table = write_outputs(results, args.out.expanduser().absolute())
    sys.stdout.write(table.read_text())


if __name__ == "__main__":
    main()
