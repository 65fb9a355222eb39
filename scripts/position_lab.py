#!/usr/bin/env python
"""Position-encoding benchmarks: train the same model once per position scheme and compare what generalises.

    python scripts/position_lab.py scan --split length            # SCAN length split, every scheme (~1 h on 2 cores)
    python scripts/position_lab.py scan --split add_jump --schemes rotary,t5
    python scripts/position_lab.py scan --quick                   # tiny runs: checks the plumbing in seconds

`scan` trains `experiment=scan_length` (the translation demo's Transformer) with `data.split=<split>` for each
scheme, as a user runs it (`mmattn-train` in a subprocess, one run directory each), in up to three variants:

- `eos`: the usual model, which must decide where to stop: test exact match of its own outputs;
- `eos_oracle`: the same checkpoint decoded with every output forced to its reference's length (`mmattn-eval
  decoding.oracle_length=true`), which separates "what to say" from "when to stop" (Newman et al., 2020);
- `no_eos`: a model trained without EOS in its loss (`module.predict_eos=false`), decoded at the oracle length.

It writes `<out>/scan_<split>.json` (every run's metrics, wall time and overrides), `scan_<split>.md` (the table) and
`scan_<split>.png` (test exact match per scheme and variant). Progress goes to stderr; the markdown table to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def log(msg: str) -> None:
    """Progress on stderr."""
    print(msg, file=sys.stderr, flush=True)


def _run(cmd: list[str], env: dict[str, str], log_file: Path) -> float:
    """Run one CLI command, its output into `log_file`; return its wall time. Raises with the log's tail on failure."""
    start = time.perf_counter()
    with log_file.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = log_file.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); see {log_file}:\n{tail}")
    return time.perf_counter() - start


def _best_checkpoint(run_dir: Path) -> Path:
    """The selected checkpoint (the one that is not last.ckpt), else last.ckpt."""
    ckpts = sorted(p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt")
    return ckpts[-1] if ckpts else run_dir / "checkpoints" / "last.ckpt"


def run_scan(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate every scheme and variant; return the results (also written as JSON)."""
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    unknown = sorted(set(schemes) - set(SCAN_SCHEMES))
    if unknown:
        raise SystemExit(f"--schemes: unknown {unknown}; choose from {','.join(SCAN_SCHEMES)}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or set(variants) - set(VARIANTS):
        raise SystemExit(f"--variants {args.variants!r}: choose from {','.join(VARIANTS)}")
    out = args.out.expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    base = [
        "experiment=scan_length",
        f"data.split={args.split}",
        f"paths.data_dir={args.data_dir.expanduser().absolute()}",
        f"trainer.max_epochs={args.epochs}",
        f"seed={args.seed}",
        *(QUICK if args.quick else []),
        *args.override,
    ]
    bin_dir = Path(sys.executable).parent
    results: dict[str, Any] = {
        "split": args.split,
        "epochs": args.epochs,
        "seed": args.seed,
        "quick": args.quick,
        "threads": args.threads or os.cpu_count(),
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
                    str(bin_dir / "mmattn-train"),
                    *base,
                    *SCAN_SCHEMES[scheme],
                    *extra,
                    f"task_name=scan_{args.split}_{scheme}_{train_variant}",
                    f"hydra.run.dir={run_dir}",
                ]
                log(f"[{scheme}] training ({train_variant}) -> {run_dir}")
                seconds = _run(cmd, env, out / f"{args.split}_{scheme}_{train_variant}.log")
                metrics = json.loads((run_dir / "metrics.json").read_text())
                entry[f"train_{train_variant}"] = {"seconds": round(seconds, 1), "metrics": metrics}
                trained[train_variant] = run_dir
            run_dir = trained[train_variant]
            if variant == "eos_oracle":
                eval_dir = run_dir / "oracle_eval"
                cmd = [
                    str(bin_dir / "mmattn-eval"),
                    f"ckpt_path={_best_checkpoint(run_dir)}",
                    "decoding.oracle_length=true",
                    f"paths.data_dir={args.data_dir.expanduser().absolute()}",
                    *(["+trainer.limit_test_batches=2"] if args.quick else []),
                    f"hydra.run.dir={eval_dir}",
                ]
                log(f"[{scheme}] oracle-length evaluation")
                _run(cmd, env, out / f"{args.split}_{scheme}_eos_oracle.log")
                metrics = json.loads((eval_dir / "metrics.json").read_text())
            else:
                metrics = entry[f"train_{train_variant}"]["metrics"]
            entry[variant] = {"test_exact": metrics.get("test/exact"), "val_exact": metrics.get("val/exact_best")}
            log(f"[{scheme}] {variant}: test exact {entry[variant]['test_exact']}")
        entry["minutes"] = round(sum(v["seconds"] for k, v in entry.items() if k.startswith("train_")) / 60, 2)
        results["runs"][scheme] = entry
        write_outputs(results, out, variants)  # after every scheme: an interrupted benchmark keeps what it measured
    return results


def markdown(results: dict[str, Any], variants: list[str]) -> str:
    """The results as a markdown table, one row per scheme."""
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


def picture(results: dict[str, Any], variants: list[str], path: Path) -> None:
    """Grouped bars: test exact match per scheme (groups) and variant (bars), the 0.5 target as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def write_outputs(results: dict[str, Any], out: Path, variants: list[str]) -> None:
    """JSON, markdown and PNG of the results so far (each written whole, then renamed)."""
    stem = out / f"scan_{results['split']}"
    for suffix, text in ((".json", json.dumps(results, indent=2) + "\n"), (".md", markdown(results, variants))):
        tmp = stem.with_suffix(suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(stem.with_suffix(suffix))
    picture(results, variants, stem.with_suffix(".png"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="bench", required=True)
    scan = sub.add_parser("scan", help="SCAN length / add-jump split per position scheme")
    scan.add_argument("--split", default="length", choices=("length", "add_jump", "simple"))
    scan.add_argument("--schemes", default=",".join(SCAN_SCHEMES), help=f"comma-separated of {','.join(SCAN_SCHEMES)}")
    scan.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated of {','.join(VARIANTS)}")
    scan.add_argument("--epochs", type=int, default=12)
    scan.add_argument("--seed", type=int, default=42)
    scan.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of every run (default: all cores)")
    scan.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MMATTN_DATA_DIR", "data")))
    scan.add_argument("--out", type=Path, default=Path("results/position_lab"))
    scan.add_argument("--quick", action="store_true", help="tiny models and 2 batches: checks the plumbing only")
    scan.add_argument("override", nargs="*", help="extra Hydra overrides for every run, e.g. model.dim=64")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the chosen benchmark and print its markdown table."""
    args = parse_args(argv)
    results = run_scan(args)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    sys.stdout.write(markdown(results, variants))


if __name__ == "__main__":
    main()
