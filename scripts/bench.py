#!/usr/bin/env python
"""Benchmark the attention core against torch and timm: attention speed, the cost of each position scheme, a ViT-Tiny
training step, attention memory,
the audio pipeline, translation decoding and training, language-model sampling, DDP scaling, and the LM corpus (time
to tokenize a 200 MB corpus; peak RSS of LM training against corpus size).

Prints one JSON object on stdout and nothing else (progress goes to stderr):

    python scripts/bench.py                                  # everything; a few minutes on 2 CPU cores
    python scripts/bench.py --only attention --repeats 30 --out bench.json
    python scripts/bench.py --quick                          # tiny shapes, seconds (used by the tests)
    python scripts/bench.py --device cuda
    python scripts/bench.py --only lm_corpus --corpus-mb 10,200     # ~10 min on 2 cores, ~1.5 GB of temporary disk

Method: warm-up calls, then timed repetitions with the candidates interleaved (A, B, C, B, C, A, ...) so drifting
machine load hits every candidate alike; the median of the repetitions; ratios come from the same process. Peak
memory of one attention forward+backward is measured in a fresh subprocess per case (`--memory-case`), because on
CPU the only peak statistic is the process-wide resident set high-water mark.
"""

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from bench_loader import bench_loader  # scripts/, beside this file
from torch import Tensor, nn

from mmattn.nn import Decoder, Encoder, MultiHeadAttention, RandomPositions

SECTIONS = ("attention", "positions", "vit", "memory", "audio", "translation", "lm", "ddp", "lm_corpus", "loader")
MEMORY_CASES = ("fused", "explicit", "need_weights")
MIB = 2**20

# (B, N, D, H, causal): a ViT-Tiny-like block, a mid-length sequence, a long one, and the long one causal.
ATTENTION_SHAPES = [(32, 64, 192, 3, False), (8, 256, 256, 4, False), (4, 1024, 256, 8, False), (4, 1024, 256, 8, True)]
ATTENTION_SHAPES_QUICK = [(2, 16, 32, 2, False), (2, 32, 32, 4, True)]
MEMORY_SHAPE = (1, 4096, 256, 4)  # B, N, D, H: one fp32 score matrix is N*N*H*4 bytes = 256 MiB
MEMORY_SHAPE_QUICK = (1, 1024, 64, 4)
TARGETS = {
    "attention ours/torch_mha": 1.0,
    "attention ours/bare": 1.1,
    "vit_train_step ours/timm": 1.05,
    # Below these: cached greedy decoding at 128 tokens must be >= 3x faster than recomputing the prefix (time ratio
    # <= 1/3), and a training step no slower than torch.nn.Transformer's (time ratio <= 1.0).
    "decode_128 cached/recompute": 1 / 3,
    "seq2seq_train_step ours/torch": 1.0,
    # Sampling 256 tokens from a decoder-only LM on the KV cache must be >= 3x faster than recomputing every prefix.
    "lm_sample_256 cached/recompute": 1 / 3,
    # The peak RSS of an LM training process (tokenizing included) must not grow with the corpus: 200 MB vs 10 MB.
    "lm_corpus process_peak_rss largest/smallest": 1.1,
    # The training loader from shards delivers >= 3x what the demo's model consumes (its time per sample <= 1/3 of the
    # model's), and is not slower than reading the data folder (10% for timing noise).
    "loader images model/shards": 1 / 3,
    "loader audio model/shards": 1 / 3,
    "loader images files/shards": 1.1,
    "loader audio files/shards": 1.1,
}


def log(msg: str) -> None:
    """Progress line on stderr (stdout carries only the JSON)."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so the clock measures it (CUDA launches are asynchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summarize(samples: list[float]) -> dict[str, float]:
    """Median, quartiles and min of timings in seconds; the spread shows how much to trust a ratio."""
    q1, _, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else (samples[0],) * 3
    return {"median_s": statistics.median(samples), "q1_s": q1, "q3_s": q3, "min_s": min(samples), "n": len(samples)}


def time_interleaved(
    candidates: dict[str, Callable[[], None]],
    *,
    device: torch.device,
    warmup: int,
    repeats: int,
    min_sample_s: float = 0.0,
) -> tuple[dict[str, list[float]], int]:
    """Seconds per call of each candidate, `repeats` samples each, taken in interleaved order.

    Each sample averages `inner` calls, chosen after warm-up so one sample lasts at least `min_sample_s` (very short
    calls are otherwise dominated by timer and scheduling noise). Returns the samples and `inner`.
    """
    names = list(candidates)

    def sample(fn: Callable[[], None], inner: int) -> float:
        sync(device)
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(device)
        return (time.perf_counter() - start) / inner

    for _ in range(warmup):
        for name in names:
            candidates[name]()
    slowest = max(sample(candidates[name], 1) for name in names)
    inner = max(1, math.ceil(min_sample_s / slowest)) if slowest > 0 else 1
    samples: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    gc.disable()  # a collection in the middle of one candidate's sample would be charged to it alone
    try:
        for r in range(repeats):
            # Rotate the order too: no candidate always runs right after the same neighbour (caches, clocks).
            for name in names[r % len(names) :] + names[: r % len(names)]:
                samples[name].append(sample(candidates[name], inner))
    finally:
        gc.enable()
    return samples, inner


def ratios(medians: dict[str, float], ours: str = "ours") -> dict[str, float]:
    """ours / other for every other candidate, from medians measured in this process."""
    return {f"{ours}/{name}": medians[ours] / t for name, t in medians.items() if name != ours}


# --------------------------------------------------------------------------------------------------- attention


class BareAttention(nn.Module):
    """The least code that computes the same function: one packed Linear, SDPA, one output Linear."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, causal: bool = False) -> Tensor:
        """Self-attention of x [B, N, D]."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # [B, H, N, d]
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


def attention_candidates(
    dim: int, num_heads: int, causal: bool, device: torch.device
) -> tuple[dict[str, Callable[[Tensor], Tensor]], list[nn.Module]]:
    """Forward functions x -> y of ours, torch.nn.MultiheadAttention and the bare version (ours' weights in all)."""
    ours = MultiHeadAttention(dim, num_heads).to(device)
    mha = nn.MultiheadAttention(dim, num_heads, batch_first=True).to(device)
    bare = BareAttention(dim, num_heads).to(device)
    with torch.no_grad():
        mha.in_proj_weight.copy_(ours.qkv.weight)
        mha.in_proj_bias.copy_(ours.qkv.bias)
        mha.out_proj.weight.copy_(ours.out_proj.weight)
        mha.out_proj.bias.copy_(ours.out_proj.bias)
        bare.qkv.load_state_dict(ours.qkv.state_dict())
        bare.proj.load_state_dict(ours.out_proj.state_dict())
    mask_cache: dict[int, Tensor] = {}

    def torch_mha(x: Tensor) -> Tensor:
        mask = None
        if causal:
            # MultiheadAttention insists on a mask with is_causal; with need_weights=False it hands SDPA is_causal.
            n = x.shape[1]
            if n not in mask_cache:
                mask_cache[n] = nn.Transformer.generate_square_subsequent_mask(n, device=x.device, dtype=x.dtype)
            mask = mask_cache[n]
        # need_weights=False: the default (True) would take the explicit softmax path and be an unfair baseline.
        return mha(x, x, x, need_weights=False, attn_mask=mask, is_causal=causal)[0]

    fns = {"ours": lambda x: ours(x, causal=causal), "torch_mha": torch_mha, "bare": lambda x: bare(x, causal=causal)}
    return fns, [ours, mha, bare]


def fwd_bwd_step(
    fn: Callable[[Tensor], Tensor], modules: list[nn.Module], x: Tensor, grad_out: Tensor
) -> Callable[[], None]:
    """One forward+backward of `fn` on `x` with a fresh gradient per call, as in training."""

    def step() -> None:
        for m in modules:
            m.zero_grad(set_to_none=True)
        x.grad = None
        fn(x).backward(grad_out)  # x needs a gradient too: attention sits inside a network

    return step


def bench_attention(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Forward+backward time of our attention against torch.nn.MultiheadAttention and bare linear+SDPA."""
    shapes = ATTENTION_SHAPES_QUICK if args.quick else ATTENTION_SHAPES
    warmup, repeats = (1, args.repeats or 3) if args.quick else (3, args.repeats or 15)
    min_sample_s = 0.0 if args.quick else 0.02
    results = []
    for b, n, d, h, causal in shapes:
        torch.manual_seed(0)
        fns, modules = attention_candidates(d, h, causal, device)
        x = torch.randn(b, n, d, device=device, requires_grad=True)
        grad_out = torch.randn(b, n, d, device=device)
        with torch.no_grad():
            ref = fns["ours"](x)
            diffs = {name: (fn(x) - ref).abs().max().item() for name, fn in fns.items() if name != "ours"}

        samples, inner = time_interleaved(
            {name: fwd_bwd_step(fn, modules, x, grad_out) for name, fn in fns.items()},
            device=device,
            warmup=warmup,
            repeats=repeats,
            min_sample_s=min_sample_s,
        )
        stats = {name: summarize(s) for name, s in samples.items()}
        medians = {name: s["median_s"] for name, s in stats.items()}
        entry = {
            "shape": {"B": b, "N": n, "D": d, "H": h, "causal": causal},
            "calls_per_sample": inner,
            "median_s": medians,
            "stats": stats,
            "ratio": ratios(medians),
            "max_abs_diff_vs_ours": diffs,
        }
        results.append(entry)
        pretty = ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in medians.items())
        log(f"attention B={b} N={n} D={d} H={h} causal={causal}: {pretty}; " + _fmt_ratios(entry["ratio"]))
    return {"warmup": warmup, "repeats": repeats, "what": "forward + backward, fp32, train mode", "results": results}


def _fmt_ratios(r: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in r.items())


# --------------------------------------------------------------------------------------------------- positions

# (B, N, D, H): the grid schemes see N tokens as a sqrt(N) x sqrt(N) grid.
POSITION_SHAPE = (8, 256, 256, 4)
POSITION_SHAPE_QUICK = (2, 16, 32, 2)
POSITION_SCHEMES = ("none", "rotary", "alibi", "t5", "rotary2d", "rotary2d_mixed", "random+rotary")


def bench_positions(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Forward+backward time of a 2-layer encoder per position scheme, and a cached decoding step per 1-D scheme,
    each over the same stack without positions (NoPE), in one process.

    Every scheme runs on SDPA: rotary turns q/k before it (no mask), ALiBi and T5 pass their bias as a float mask
    [H, N, N], which the fused kernels take as an additive bias; none forces the explicit path.
    """
    b, n, d, h = POSITION_SHAPE_QUICK if args.quick else POSITION_SHAPE
    warmup, repeats = (1, args.repeats or 3) if args.quick else (3, args.repeats or 15)
    min_sample_s = 0.0 if args.quick else 0.02
    side = math.isqrt(n)
    torch.manual_seed(0)
    x = torch.randn(b, n, d, device=device, requires_grad=True)
    grad_out = torch.randn(b, n, d, device=device)
    steps, modules = {}, []
    for scheme in POSITION_SCHEMES:
        kind = scheme.removeprefix("random+")
        enc = Encoder(d, 2, h, relative_position=None if kind == "none" else kind).to(device).train()
        modules.append(enc)
        rand = RandomPositions(4 * n) if scheme.startswith("random+") else None

        def fn(t: Tensor, enc: Encoder = enc, rand: RandomPositions | None = rand) -> Tensor:
            pos = None if rand is None else rand.draw(t.shape[1], device=t.device)
            return enc(t, positions=pos, grid_size=(side, side))

        steps[scheme] = fwd_bwd_step(fn, modules, x, grad_out)
    samples, inner = time_interleaved(steps, device=device, warmup=warmup, repeats=repeats, min_sample_s=min_sample_s)
    medians = {k: summarize(v)["median_s"] for k, v in samples.items()}
    encoder = {
        "median_s": medians,
        "ratio": {f"{k}/none": medians[k] / medians["none"] for k in POSITION_SCHEMES[1:]},
        "calls_per_sample": inner,
    }
    log("positions encoder fwd+bwd: " + _fmt_ratios(encoder["ratio"]))

    # One cached decoding step after n/2 cached tokens: relative biases are computed for the new row only.
    decode_steps = {}
    for kind in ("none", "rotary", "alibi", "t5"):
        dec = Decoder(d, 2, h, cross_attention=False, relative_position=None if kind == "none" else kind)
        dec = dec.to(device).eval()
        prefix = torch.randn(b, n // 2, d, device=device)
        token = torch.randn(b, 1, d, device=device)

        def step(dec: Decoder = dec, prefix: Tensor = prefix, token: Tensor = token) -> None:
            cache = dec.init_cache(b, n // 2 + 1, device=device)
            with torch.no_grad():
                dec(prefix, cache=cache)
                dec(token, cache=cache)

        decode_steps[kind] = step
    samples, _ = time_interleaved(decode_steps, device=device, warmup=warmup, repeats=repeats, min_sample_s=0.0)
    dmed = {k: summarize(v)["median_s"] for k, v in samples.items()}
    decode = {"median_s": dmed, "ratio": {f"{k}/none": dmed[k] / dmed["none"] for k in ("rotary", "alibi", "t5")}}
    log("positions cached prefill+step: " + _fmt_ratios(decode["ratio"]))
    return {
        "shape": {"B": b, "N": n, "D": d, "H": h, "grid": [side, side]},
        "what": "2-layer encoder forward + backward, fp32, train mode; decoder prefill + one cached step, no grad",
        "encoder": encoder,
        "decode": decode,
    }


# --------------------------------------------------------------------------------------------------------- ViT


def bench_vit(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """One AdamW training step of our ViT-Tiny against the timm model it was built from (same config and weights)."""
    import timm

    from mmattn.tasks.vision import ViT

    batch = 2 if args.quick else 32
    warmup, repeats = (1, args.repeats or 2) if args.quick else (2, args.repeats or 7)
    torch.manual_seed(0)
    theirs = timm.create_model("vit_tiny_patch16_224", pretrained=False).to(device)
    ours = ViT.from_timm(theirs).to(device)
    x = torch.randn(batch, 3, 224, 224, device=device)
    y = torch.randint(0, theirs.num_classes, (batch,), device=device)
    with torch.no_grad():
        logit_diff = (ours.eval()(x) - theirs.eval()(x)).abs().max().item()

    def make_step(model: nn.Module) -> Callable[[], None]:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        return step

    samples, _ = time_interleaved(
        {"ours": make_step(ours), "timm": make_step(theirs)}, device=device, warmup=warmup, repeats=repeats
    )
    stats = {name: summarize(s) for name, s in samples.items()}
    medians = {name: s["median_s"] for name, s in stats.items()}
    result = {
        "model": "vit_tiny_patch16_224",
        "batch": batch,
        "img_size": 224,
        "what": "forward, cross-entropy, backward, AdamW step; fp32",
        "warmup": warmup,
        "repeats": repeats,
        "median_s": medians,
        "stats": stats,
        "ratio": ratios(medians),
        "max_abs_logit_diff": logit_diff,
        "timm_fused_attn": bool(getattr(theirs.blocks[0].attn, "fused_attn", False)),
        "ours_fused_attn": bool(ours.encoder.layers[0].attn.fused_attn),
    }
    log(
        f"vit_train_step batch={batch}: ours {medians['ours']:.3f} s, timm {medians['timm']:.3f} s; "
        + _fmt_ratios(result["ratio"])
    )
    return result


# ------------------------------------------------------------------------------------------------------ memory


def _status_kib(field: str) -> int:
    """A `VmXXX:  123 kB` field of /proc/self/status, in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0); False where that is impossible."""
    # The kernel's RSS counters are per-CPU approximations, so right after the reset VmHWM may read a little above
    # VmRSS (seen: a few hundred KiB). A kernel without the reset keeps the import-time peak, far higher.
    try:
        for _ in range(3):
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            if _status_kib("VmHWM") <= _status_kib("VmRSS") + 1024:
                return True
    except OSError:
        pass
    return False


def _rss_bytes() -> int:
    """Current RSS where /proc exists, else 0."""
    try:
        return _status_kib("VmRSS") * 1024
    except (OSError, KeyError):
        return 0


def _maxrss_bytes() -> int:
    """Peak RSS of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def memory_case(case: str, shape: tuple[int, int, int, int], device: torch.device) -> dict[str, Any]:
    """Peak memory increase of one attention forward+backward over a baseline taken after the inputs exist."""
    b, n, d, h = shape
    # The attention module reads the switch at construction; set it either way so the parent's env cannot leak in.
    os.environ["MMATTN_FUSED_ATTN"] = "0" if case == "explicit" else "1"
    torch.manual_seed(0)
    attn = MultiHeadAttention(d, h).to(device)

    def run(x: Tensor, grad_out: Tensor) -> None:
        attn.zero_grad(set_to_none=True)
        x.grad = None
        out = attn(x, need_weights=case == "need_weights")
        out = out[0] if isinstance(out, tuple) else out
        out.backward(grad_out)

    # Warm up at a short length: thread pools, oneDNN primitives and lazy inits are not the attention's memory. Short,
    # because on CPU freed blocks stay in the malloc heap, and the measured run could reuse them without raising RSS.
    small = torch.randn(b, min(n, 64), d, device=device, requires_grad=True)
    run(small, torch.ones_like(small))
    del small
    attn.zero_grad(set_to_none=True)
    x = torch.randn(b, n, d, device=device, requires_grad=True)
    grad_out = torch.randn(b, n, d, device=device)
    gc.collect()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        run(x, grad_out)
        sync(device)
        peak, method = torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    elif _reset_peak_rss():
        # The high-water mark now equals the current RSS, so the peak belongs to this one forward+backward.
        baseline = _status_kib("VmRSS") * 1024
        run(x, grad_out)
        peak, method = _status_kib("VmHWM") * 1024, "/proc/self/status VmHWM after clear_refs=5"
    else:
        # ru_maxrss cannot be lowered: anything above the current RSS earlier (imports) hides part of the peak.
        baseline = max(_maxrss_bytes(), _rss_bytes())
        run(x, grad_out)
        peak, method = _maxrss_bytes(), "resource.getrusage ru_maxrss"
    increase = (peak - baseline) / MIB
    return {"case": case, "peak_increase_mib": increase, "baseline_mib": baseline / MIB, "method": method}


def bench_memory(args: argparse.Namespace, device: torch.device, threads: int) -> dict[str, Any]:
    """Run every memory case in its own fresh interpreter and collect the results."""
    shape = MEMORY_SHAPE_QUICK if args.quick else MEMORY_SHAPE
    b, n, d, h = shape
    # A fixed mmap threshold turns off glibc's adaptive one, which would serve later large tensors from the heap
    # and keep freed ones resident: every tensor >= 128 KiB is then mapped on allocation and unmapped on free, so
    # the RSS peak tracks the live tensors (without it the same run measured 50 or 67 MiB at random).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    procs = {}
    for case in MEMORY_CASES:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-case", case, "--device", str(device)]
        cmd += ["--threads", str(threads), "--memory-shape", ",".join(map(str, shape))]
        # Concurrently: each peak is per process, so they do not disturb one another, and the imports overlap.
        procs[case] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)  # stderr passes through
    cases = {}
    for case, proc in procs.items():
        stdout, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"memory case {case!r} failed with exit code {proc.returncode} (its stderr is above)")
        cases[case] = json.loads(stdout)
        log(f"attention_memory {case}: +{cases[case]['peak_increase_mib']:.1f} MiB")
    peaks = {case: r["peak_increase_mib"] for case, r in cases.items()}
    return {
        "shape": {"B": b, "N": n, "D": d, "H": h},
        "what": "peak memory increase of one self-attention forward+backward, fp32, over a baseline with the inputs",
        "method": cases["fused"]["method"] + ", MALLOC_MMAP_THRESHOLD_=131072",
        "peak_increase_mib": peaks,
        "theoretical_score_matrix_mib": b * h * n * n * 4 / MIB,
        "cases": "fused: the default; explicit: MMATTN_FUSED_ATTN=0; need_weights: need_weights=True, default module",
        "ratio": {f"{c}/fused": peaks[c] / peaks["fused"] if peaks["fused"] > 0 else None for c in MEMORY_CASES[1:]},
    }


# -------------------------------------------------------------------------------------------------------- audio

# (name, clip seconds, frames, model kwargs): the demo, and AST-Tiny on 1 s (Speech Commands) and 10 s (AudioSet) clips.
AUDIO_CASES = (
    ("demo", 1.0, 100, dict(freq_stride=16, time_stride=16, dim=96, depth=4, num_heads=4, mlp_ratio=2.0)),
    ("1s_ast_tiny", 1.0, 128, dict(freq_stride=10, time_stride=10, dim=192, depth=12, num_heads=3)),
    ("10s_ast_tiny", 10.0, 1024, dict(freq_stride=10, time_stride=10, dim=192, depth=12, num_heads=3)),
)
AUDIO_QUICK_MODEL = dict(dim=32, depth=1, num_heads=2, mlp_ratio=2.0)


def _write_clips(folder: Path, count: int, seconds: float, sample_rate: int) -> list[Path]:
    """Real 16-bit WAV files of noise plus a tone, like the demo's, so decoding is measured too."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    n = int(seconds * sample_rate)
    paths = []
    for i in range(count):
        t = np.arange(n) / sample_rate
        wave = 0.1 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * (400 + 50 * i) * t)
        path = folder / f"clip_{seconds:g}s_{i:03d}.wav"
        sf.write(path, np.clip(wave, -1, 1), sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths


def _audio_case(
    name: str, seconds: float, frames: int, model_kwargs: dict, folder: Path, args: argparse.Namespace, device
) -> dict[str, Any]:
    """One case of `bench_audio`: pipeline and training clips/s at one clip length and model size."""
    from mmattn.tasks.audio import AST, AudioFeatures
    from mmattn.tasks.audio.io import fix_length, read_audio

    sample_rate = 16000
    batch = 4 if args.quick else (8 if seconds > 5 else 32)
    clips = _write_clips(folder, batch, seconds, sample_rate)
    num_samples = int(seconds * sample_rate)
    features = AudioFeatures(target_length=frames).to(device)
    repeats = args.repeats or (2 if args.quick else 5)

    def read_all() -> list[Tensor]:
        return [fix_length(read_audio(p, sample_rate), num_samples) for p in clips]

    def loader_side() -> None:
        for wave in read_all():
            features(wave.to(device))

    waves = torch.stack(read_all()).to(device)

    def device_side() -> None:
        features(waves)

    kwargs = {**model_kwargs, **(AUDIO_QUICK_MODEL if args.quick else {})}
    torch.manual_seed(0)
    model = AST(num_mel_bins=128, target_length=frames, num_classes=35, **kwargs).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = features(waves)
    y = torch.randint(0, 35, (batch,), device=device)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    with torch.no_grad():
        samples, _ = time_interleaved(
            {"read_fbank_per_clip": loader_side, "fbank_batched": device_side},
            device=device,
            warmup=1,
            repeats=repeats,
        )
    samples.update(time_interleaved({"train_step": train_step}, device=device, warmup=1, repeats=repeats)[0])
    medians = {k: statistics.median(v) for k, v in samples.items()}
    per_s = {k: batch / v for k, v in medians.items()}
    log(
        f"audio {name}: read+fbank {per_s['read_fbank_per_clip']:.0f} clips/s per worker, batched fbank "
        f"{per_s['fbank_batched']:.0f} clips/s, train step {per_s['train_step']:.1f} clips/s"
    )
    return {
        "case": name,
        "clip_seconds": seconds,
        "frames": frames,
        "tokens": model.embed.grid_size[0] * model.embed.grid_size[1] + model.num_prefix_tokens,
        "batch": batch,
        "model": kwargs,
        "median_s": medians,
        "clips_per_s": per_s,
        # >= 1: one loader worker keeps up with training; below 1, at least `workers_needed` workers are.
        "pipeline_over_train": per_s["read_fbank_per_clip"] / per_s["train_step"],
        "workers_needed": math.ceil(per_s["train_step"] / per_s["read_fbank_per_clip"]),
    }


def bench_audio(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Input pipeline clips/s (read + fbank per clip, as one loader worker does it, or batched on the device)
    against the AST training step's clips/s, for the demo and for 1 s / 10 s clips."""
    import tempfile

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, seconds, frames, model_kwargs in AUDIO_CASES:
            if args.quick and name == "10s_ast_tiny":
                continue
            results.append(_audio_case(name, seconds, frames, model_kwargs, Path(tmp), args, device))
    return {"what": "clips/s of one process; train step = forward, CE, backward, AdamW; fp32", "results": results}


# --------------------------------------------------------------------------------------------------- translation


class TorchSeq2Seq(nn.Module):
    """torch.nn.Transformer with the same embeddings, sinusoidal positions and tied output layer as EncoderDecoder."""

    def __init__(self, vocab: int, dim: int, depth: int, heads: int, ffn: int) -> None:
        super().__init__()
        from mmattn.nn import sinusoidal_table

        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.register_buffer("pos", sinusoidal_table(1024, dim), persistent=False)
        with warnings.catch_warnings():
            # nn.Transformer's encoder notes that nested tensors are off with norm_first; nothing to act on.
            warnings.simplefilter("ignore", UserWarning)
            self.core = nn.Transformer(
                dim, heads, depth, depth, ffn, dropout=0.1, batch_first=True, norm_first=True, activation="relu"
            )
        self.scale = dim**0.5

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        s = self.embed(src) * self.scale + self.pos[: src.shape[1]]
        t = self.embed(tgt_in) * self.scale + self.pos[: tgt_in.shape[1]]
        mask = nn.Transformer.generate_square_subsequent_mask(tgt_in.shape[1], device=src.device)
        h = self.core(s, t, tgt_mask=mask, tgt_is_causal=True, src_key_padding_mask=src == 0)
        return h @ self.embed.weight.T


def bench_translation(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Greedy decoding with the KV cache against recomputing the prefix, and a seq2seq training step of our
    EncoderDecoder against torch.nn.Transformer of the same size."""
    from mmattn.models import EncoderDecoder, greedy_decode

    vocab, dim, depth, heads = (64, 32, 1, 2) if args.quick else (8000, 512, 6, 8)
    batch, src_len = (2, 8) if args.quick else (16, 32)
    repeats = args.repeats or (2 if args.quick else 5)
    torch.manual_seed(0)
    ours = EncoderDecoder(
        src_vocab_size=vocab,
        tgt_vocab_size=vocab,
        dim=dim,
        encoder_depth=depth,
        decoder_depth=depth,
        num_heads=heads,
        share_embeddings="all",
    ).to(device)
    src = torch.randint(4, vocab, (batch, src_len), device=device)

    decode: dict[str, Any] = {}
    for steps in (16,) if args.quick else (64, 128):
        # An EOS id outside the vocabulary is never produced, so both variants run all `steps` steps.
        kw = dict(bos_id=1, eos_id=vocab, max_len_a=0.0, max_len_b=steps)
        ours.eval()
        samples, _ = time_interleaved(
            {
                "cached": lambda kw=kw: greedy_decode(ours, src, use_cache=True, **kw),
                "recompute": lambda kw=kw: greedy_decode(ours, src, use_cache=False, **kw),
            },
            device=device,
            warmup=1,
            repeats=repeats,
        )
        medians = {k: statistics.median(v) for k, v in samples.items()}
        decode[str(steps)] = {
            "median_s": medians,
            "ratio": {"cached/recompute": medians["cached"] / medians["recompute"]},
            "speedup": medians["recompute"] / medians["cached"],
        }
        log(
            f"decode {steps} tokens batch={batch}: cached {medians['cached']:.3f} s, recompute "
            f"{medians['recompute']:.3f} s ({decode[str(steps)]['speedup']:.1f}x)"
        )

    tgt_len = 8 if args.quick else 32
    theirs = TorchSeq2Seq(vocab, dim, depth, heads, 4 * dim).to(device)
    tgt_in = torch.randint(4, vocab, (batch, tgt_len), device=device)
    tgt = torch.randint(4, vocab, (batch, tgt_len), device=device)

    def make_step(model: nn.Module) -> Callable[[], None]:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98))

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            logits = model(src, tgt_in)
            F.cross_entropy(logits.reshape(-1, vocab), tgt.reshape(-1), label_smoothing=0.1).backward()
            opt.step()

        return step

    samples, _ = time_interleaved(
        {"ours": make_step(ours), "torch": make_step(theirs)}, device=device, warmup=1, repeats=repeats
    )
    medians = {k: statistics.median(v) for k, v in samples.items()}
    tokens = batch * (src_len + tgt_len)
    train = {
        "median_s": medians,
        "tokens_per_s": {k: tokens / v for k, v in medians.items()},
        "ratio": {"ours/torch": medians["ours"] / medians["torch"]},
        "params": {k: sum(p.numel() for p in m.parameters()) for k, m in (("ours", ours), ("torch", theirs))},
    }
    log(
        f"seq2seq train step: ours {medians['ours']:.3f} s, torch.nn.Transformer {medians['torch']:.3f} s; "
        + _fmt_ratios(train["ratio"])
    )
    return {
        "model": {"vocab": vocab, "dim": dim, "depth": depth, "heads": heads, "ffn": 4 * dim},
        "batch": batch,
        "src_len": src_len,
        "tgt_len": tgt_len,
        "decode": decode,
        "train_step": train,
    }


# -------------------------------------------------------------------------------------------------------- main


# ----------------------------------------------------------------------------------------------------------- ddp

# The vision demo's model and data (configs/experiment/vision_demo.yaml), fewer images; per-process batch 128.
DDP_OVERRIDES = ["data.val_per_class=10", "data.test_per_class=10", "data.num_workers=0"]


def bench_lm(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Sampled tokens per second of a decoder-only LM with the KV cache against recomputing every prefix."""
    from mmattn.models import DecoderOnly, sample_tokens

    vocab, dim, depth, heads = (64, 32, 1, 2) if args.quick else (8000, 512, 6, 8)
    batch, new_tokens = (2, 16) if args.quick else (8, 256)
    repeats = args.repeats or (2 if args.quick else 3)
    torch.manual_seed(0)
    model = DecoderOnly(vocab_size=vocab, dim=dim, depth=depth, num_heads=heads, context_length=new_tokens + 1)
    model = model.to(device).eval()
    prompt = torch.ones(batch, 1, dtype=torch.long, device=device)

    def run(use_cache: bool) -> Callable[[], None]:
        # No eos: every row samples all `new_tokens` tokens; a fixed seed draws the same tokens in both variants.
        return lambda: sample_tokens(
            model,
            prompt,
            max_new_tokens=new_tokens,
            top_k=50,
            generator=torch.Generator(device=device).manual_seed(0),
            use_cache=use_cache,
        )

    samples, _ = time_interleaved(
        {"cached": run(True), "recompute": run(False)}, device=device, warmup=1, repeats=repeats
    )
    medians = {k: statistics.median(v) for k, v in samples.items()}
    tokens_per_s = {k: batch * new_tokens / v for k, v in medians.items()}
    log(
        f"lm sample {new_tokens} tokens batch={batch}: cached {tokens_per_s['cached']:.0f} tok/s, recompute "
        f"{tokens_per_s['recompute']:.0f} tok/s ({medians['recompute'] / medians['cached']:.1f}x)"
    )
    return {
        "shape": {"vocab": vocab, "dim": dim, "depth": depth, "heads": heads, "batch": batch, "tokens": new_tokens},
        "median_s": medians,
        "tokens_per_s": tokens_per_s,
        "ratio": {"cached/recompute": medians["cached"] / medians["recompute"]},
        "speedup": medians["recompute"] / medians["cached"],
    }


def ddp_case(processes: int, data_dir: str, quick: bool) -> dict[str, Any]:
    """Train the vision demo for a few epochs with `processes` CPU DDP ranks (gloo); rank 0 returns its timings.

    Lightning starts the other ranks by re-running this script with the same arguments.
    """
    import lightning.pytorch as pl
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate
    from omegaconf import open_dict

    per_class, epochs = (40, 2) if quick else (400, 4)
    os.environ["MMATTN_DATA_DIR"] = data_dir
    with initialize_config_module("mmattn.configs", version_base="1.3"):
        cfg = compose("train", [*DDP_OVERRIDES, f"data.train_per_class={per_class}"])
    with open_dict(cfg):
        cfg.paths.output_dir = data_dir

    class Clock(pl.Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            trainer.strategy.barrier("epoch_start")
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            trainer.strategy.barrier("epoch_end")
            self.seconds.append(time.perf_counter() - self._start)

    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.module, net=instantiate(cfg.model))
    clock = Clock()
    strategy = "auto" if processes == 1 else pl.strategies.DDPStrategy(process_group_backend="gloo")
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=processes,
        strategy=strategy,
        max_epochs=epochs,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=datamodule)
    if not trainer.is_global_zero:
        return {}
    # The first epoch pays for lazy initialisation (oneDNN primitives, gloo buffers): leave it out.
    seconds = clock.seconds[1:]
    samples_per_epoch = int(trainer.num_training_batches) * cfg.data.batch_size * trainer.world_size
    return {
        "processes": processes,
        "threads_per_process": torch.get_num_threads(),
        "epoch_seconds": [round(t, 3) for t in seconds],
        "samples_per_epoch": samples_per_epoch,
        "samples_per_s": samples_per_epoch * len(seconds) / sum(seconds),
    }


def bench_ddp(args: argparse.Namespace) -> dict[str, Any]:
    """Training throughput of the vision demo with 2 CPU DDP processes against 1 process (fresh processes each)."""
    import tempfile

    cases = {}
    with tempfile.TemporaryDirectory() as tmp:

        def start(processes: int) -> subprocess.Popen:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--ddp-case", str(processes), "--ddp-data", tmp]
            cmd += ["--quick"] if args.quick else []
            # OMP_NUM_THREADS unset: Lightning gives each of N CPU ranks cores / N threads; 1 process takes them all.
            env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)

        # --quick (the tests' check that the section works) runs both cases side by side, as lm_corpus does: their
        # throughputs mean nothing there. Measured runs take one at a time.
        started = {p: start(p) for p in (1, 2)} if args.quick else {}
        for processes in (1, 2):
            proc = started.get(processes) or start(processes)
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"ddp case {processes} failed with exit code {proc.returncode} (stderr above)")
            cases[str(processes)] = json.loads(out)
            log(f"ddp {processes} process(es): {cases[str(processes)]['samples_per_s']:.0f} samples/s")
    one, two = cases["1"]["samples_per_s"], cases["2"]["samples_per_s"]
    return {
        "what": "vision demo training samples/s (all ranks), same per-process batch, epochs after the first",
        "cases": cases,
        "ratio": {"2proc/1proc samples_per_s": two / one},
    }


# ----------------------------------------------------------------------------------------------------- lm corpus

MB = 10**6  # corpus sizes and throughput in decimal MB, as file sizes are quoted; memory in MiB
# Ranks of a few real function words first, then made-up words from syllables: Zipfian text whose BPE looks English.
CORPUS_COMMON = (
    "the of and to a in is it you that he was for on are with as his they be at one have this from or had by word "
    "but what some we can out other were all there when up use your how said an each she which do their time if will "
    "way about many then them write would like so these her long make thing see him two has look more day could go"
).split()
CORPUS_FILE_MB = 8  # the training text is split into files of this size, as real corpora are
CORPUS_TRAIN_STEPS = 30


def _corpus_words(count: int, rng: Any) -> list[str]:
    """`count` distinct words: CORPUS_COMMON, then pronounceable made-up ones of 1-3 syllables."""
    onsets = "b c d f g h j k l m n p r s t v w y z bl br ch cl cr dr fl fr gl gr pl pr sh sk sp st th tr".split()
    nuclei = "a e i o u a e i o ai ea ee oo ou ie".split()
    codas = ["", "", "", "n", "r", "s", "t", "l", "nd", "st", "ng", "ck", "m", "rt", "ld"]
    words, seen = list(CORPUS_COMMON), set(CORPUS_COMMON)
    while len(words) < count:
        syllables = rng.integers(1, 4)
        word = "".join(rng.choice(onsets) + rng.choice(nuclei) for _ in range(syllables)) + rng.choice(codas)
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _corpus_text(nbytes: int, rng: Any, words: Any, cdf: Any) -> str:
    """About `nbytes` of paragraphs (2-8 sentences of 5-25 Zipf-drawn words), blank-line separated."""
    import numpy as np

    out: list[str] = []
    size = 0
    while size < nbytes:
        drawn = words[np.minimum(np.searchsorted(cdf, rng.random(100_000)), len(words) - 1)].tolist()
        lengths, per_paragraph = rng.integers(5, 26, size=10_000), rng.integers(2, 9, size=10_000)
        start = paragraphs = 0
        sentences: list[str] = []
        for length in lengths:
            if start + length > len(drawn) or size >= nbytes:
                break
            sentence = " ".join(drawn[start : start + length])
            start += length
            sentences.append(sentence[0].upper() + sentence[1:] + ".")
            if len(sentences) == per_paragraph[paragraphs]:
                paragraph = " ".join(sentences) + "\n\n"
                out.append(paragraph)
                size += len(paragraph)
                sentences, paragraphs = [], paragraphs + 1
    return "".join(out)


def write_corpus(root: Path, nbytes: int, seed: int = 0) -> int:
    """An English-like corpus of about `nbytes`, 99% as `root/train/part-NNN.txt` and 1% in `root/valid/`; its bytes.

    Deterministic in `seed`: a 20,000-word vocabulary drawn with Zipf weights (exponent 1.07), nothing downloaded.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    words = np.array(_corpus_words(20_000, rng), dtype=object)
    weights = 1.0 / (np.arange(len(words)) + 2.7) ** 1.07
    cdf = np.cumsum(weights / weights.sum())
    total = 0
    held = max(nbytes // 100, 20_000)
    for split, size in (("train", nbytes - held), ("valid", held)):
        (root / split).mkdir(parents=True)
        for part, first in enumerate(range(0, size, CORPUS_FILE_MB * MB)):
            path = root / split / f"part-{part:03d}.txt"
            path.write_text(_corpus_text(min(CORPUS_FILE_MB * MB, size - first), rng, words, cdf), encoding="utf-8")
            total += path.stat().st_size
    return total


def _rss_breakdown_mib() -> dict[str, float]:
    """Current anonymous and file-backed RSS (a mapped token file's pages that were read count as the latter)."""
    return {field: _status_kib(field) / 1024 for field in ("VmRSS", "RssAnon", "RssFile")}


def _peak_since(reset: bool) -> float:
    """Peak RSS in MiB since the last reset, or since the process began when the kernel cannot reset it."""
    return (_status_kib("VmHWM") * 1024 if reset else max(_maxrss_bytes(), _rss_bytes())) / MIB


def corpus_case(root: str, quick: bool) -> dict[str, Any]:
    """Tokenize `root/text` into token files, then train a tiny GPT on them with `mmattn.cli.train.train`: the
    seconds and the peak RSS of each phase in this one process (as in an `mmattn-train` run on rank 0)."""
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from mmattn.cli.train import train

    run = Path(root)
    steps = 3 if quick else CORPUS_TRAIN_STEPS
    overrides = [
        "data=text_folder",
        f"data.root={run / 'text'}",
        f"data.tokenizer_dir={run / 'tokenizer'}",
        f"data.token_dir={run / 'tokens'}",
        "data.block_size=128",
        "data.batch_size=16",
        "data.num_workers=0",
        "data.pin_memory=false",
        "model=gpt_demo",
        "model.dim=64",
        "model.depth=2",
        "model.num_heads=2",
        "module=language_model",
        "module.scheduler.warmup_steps=5",
        "trainer=cpu",
        "trainer.max_epochs=1",
        f"+trainer.limit_train_batches={steps}",
        "+trainer.limit_val_batches=2",
        "test=false",
    ]
    with initialize_config_module("mmattn.configs", version_base="1.3"):
        cfg = compose("train", overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run / "run")
        cfg.paths.log_dir = str(run / "logs")

    # The phases of prepare_data (rank 0), timed apart: the BPE from the streamed train split, then the token files.
    datamodule = instantiate(cfg.data)  # imports torch and Lightning
    baseline = _rss_breakdown_mib()
    import_peak = _peak_since(False)
    reset = _reset_peak_rss()
    began = time.perf_counter()
    datamodule.build_tokenizer().save(datamodule.tokenizer_dir)
    bpe_s = time.perf_counter() - began
    bpe_peak = _peak_since(reset)
    reset = _reset_peak_rss()
    began = time.perf_counter()
    datamodule.prepare_data()  # finds the tokenizer saved: writes the token files
    tokenize_s = time.perf_counter() - began
    tokenize_peak = _peak_since(reset)
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    tokens = {p.stem: json.loads(p.read_text())["tokens"] for p in sorted((run / "tokens").glob("*.json"))}
    token_bytes = sum(p.stat().st_size for p in (run / "tokens").glob("*.bin"))

    with open_dict(cfg):
        cfg.model.vocab_size = datamodule.tokenizer.vocab_size
    reset = _reset_peak_rss()
    began = time.perf_counter()
    train(cfg)  # the mmattn-train path: its prepare_data finds the token files current and maps them
    train_s = time.perf_counter() - began
    train_peak = _peak_since(reset)
    after_train = _rss_breakdown_mib()

    # Every page of the mapped training tokens read once, as a whole epoch would: they count as file-backed RSS.
    import numpy as np

    from mmattn.data.token_files import read_tokens

    meta = json.loads((run / "tokens" / "train.json").read_text())
    stream = read_tokens(run / "tokens" / "train.bin", fingerprint=meta["fingerprint"])
    for first in range(0, len(stream), 1 << 24):
        np.max(stream[first : first + (1 << 24)])
    return {
        "rss_after_imports_mib": baseline,
        "bpe_train_s": bpe_s,
        "bpe_peak_rss_mib": bpe_peak,
        "tokenize_write_s": tokenize_s,
        "tokenize_peak_rss_mib": tokenize_peak,
        "tokenize_workers": datamodule._workers(),
        # Forked: a worker's RSS counts the pages it shares with this process too.
        "tokenize_worker_peak_rss_mib": workers_peak / MIB,
        "tokens": tokens,
        "token_file_mb": token_bytes / MB,
        "vocab_size": datamodule.tokenizer.vocab_size,
        "train_steps": steps,
        "train_s": train_s,
        "train_peak_rss_mib": train_peak,
        # Not ru_maxrss: resetting VmHWM resets it too.
        "process_peak_rss_mib": max(import_peak, bpe_peak, tokenize_peak, train_peak),
        "rss_after_train_mib": after_train,
        "rss_after_reading_every_train_token_mib": _rss_breakdown_mib(),
        "peak_method": "/proc/self/status VmHWM after clear_refs=5" if reset else "resource.getrusage ru_maxrss",
    }


def bench_lm_corpus(args: argparse.Namespace) -> dict[str, Any]:
    """Time to tokenize and write an English-like corpus, and the peak RSS of an LM training process, per corpus size:
    the claim is that peak RSS does not grow with the corpus (token files are streamed in and memory-mapped)."""
    import shutil
    import tempfile

    sizes = args.corpus_mb or ([0.2, 1.0] if args.quick else [10.0, 200.0])
    cases = {}
    with tempfile.TemporaryDirectory(prefix="bench_lm_corpus_") as tmp:

        def start(mb: float) -> tuple[subprocess.Popen, int, float]:
            root = Path(tmp) / f"{mb:g}MB"
            began = time.perf_counter()
            text_bytes = write_corpus(root / "text", int(mb * MB))
            generate_s = time.perf_counter() - began
            cmd = [sys.executable, str(Path(__file__).resolve()), "--corpus-case", str(root)]
            cmd += ["--quick"] if args.quick else []
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True), text_bytes, generate_s  # stderr passes

        # --quick (a check that the section works, for the tests) runs the cases side by side: their timings mean
        # nothing there, and each process has its own corpus and peak RSS. Measured runs take one at a time.
        started = {mb: start(mb) for mb in sizes} if args.quick else {}
        for mb in sizes:
            root = Path(tmp) / f"{mb:g}MB"
            proc, text_bytes, generate_s = started.get(mb) or start(mb)
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"lm_corpus case {mb:g} MB failed with exit code {proc.returncode} (stderr above)")
            case = {"corpus_mb": text_bytes / MB, "generate_s": generate_s, **json.loads(out)}
            case["tokenize_mb_per_s"] = case["corpus_mb"] / case["tokenize_write_s"]
            cases[f"{mb:g}"] = case
            log(
                f"lm_corpus {case['corpus_mb']:.1f} MB: BPE {case['bpe_train_s']:.1f} s, tokenize+write "
                f"{case['tokenize_write_s']:.1f} s ({case['tokenize_mb_per_s']:.2f} MB/s, "
                f"{case['tokenize_workers']} workers), peak RSS tokenize {case['tokenize_peak_rss_mib']:.0f} MiB, "
                f"train {case['train_peak_rss_mib']:.0f} MiB, process {case['process_peak_rss_mib']:.0f} MiB"
            )
            shutil.rmtree(root)  # the next, larger corpus needs the disk space
    small, large = cases[f"{min(sizes):g}"], cases[f"{max(sizes):g}"]
    keys = ("bpe_peak_rss_mib", "tokenize_peak_rss_mib", "train_peak_rss_mib", "process_peak_rss_mib")
    return {
        "what": (
            "per corpus size, in one fresh process: BPE (data.vocab_size 8000) trained from the streamed train split, "
            "tokenize + write the token files (data.tokenize_workers default), then mmattn-train of a tiny GPT "
            f"(d=64, 2 layers, blocks of 128, batch 16) for {small['train_steps']} steps on the mapped files"
        ),
        "cases": cases,
        "ratio": {f"largest/smallest {k}": large[k] / small[k] for k in keys},
    }


def check_targets(result: dict[str, Any]) -> dict[str, Any]:
    """The worst ratio per target across shapes, and whether it is within the limit."""
    worst: dict[str, float] = {}
    if "attention" in result:
        for key in ("ours/torch_mha", "ours/bare"):
            worst[f"attention {key}"] = max(r["ratio"][key] for r in result["attention"]["results"])
    if "vit_train_step" in result:
        worst["vit_train_step ours/timm"] = result["vit_train_step"]["ratio"]["ours/timm"]
    if "translation" in result and "128" in result["translation"]["decode"]:
        worst["decode_128 cached/recompute"] = result["translation"]["decode"]["128"]["ratio"]["cached/recompute"]
    if "translation" in result:
        worst["seq2seq_train_step ours/torch"] = result["translation"]["train_step"]["ratio"]["ours/torch"]
    if "lm_sampling" in result and result["lm_sampling"]["shape"]["tokens"] == 256:
        worst["lm_sample_256 cached/recompute"] = result["lm_sampling"]["ratio"]["cached/recompute"]
    if "loader" in result:
        for modality, case in result["loader"]["cases"].items():
            # A "worst" is <= its limit: the inverse of how much faster the loader is than the model (at most 1/3),
            # and files against shards (shards at least as fast, with 10% for timing noise).
            best = max(v for k, v in case["ratio"].items() if k.startswith("shards/model"))
            worst[f"loader {modality} model/shards"] = 1 / best
            worst[f"loader {modality} files/shards"] = max(
                1 / v for k, v in case["ratio"].items() if k.startswith("shards/files")
            )
    if "lm_corpus" in result:
        ratio = result["lm_corpus"]["ratio"]["largest/smallest process_peak_rss_mib"]
        worst["lm_corpus process_peak_rss largest/smallest"] = ratio
    return {name: {"limit": TARGETS[name], "worst": w, "pass": w <= TARGETS[name]} for name, w in worst.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line; `--memory-case` and `--memory-shape` are the internal interface of the memory subprocesses."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--quick", action="store_true", help="tiny shapes and few repetitions (for tests)")
    p.add_argument("--repeats", type=int, default=None, help="timed repetitions per candidate (default 15, ViT 7)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:index]")
    p.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: the usable cores; 1 with --quick)"
    )
    p.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    p.add_argument("--memory-case", choices=MEMORY_CASES, default=None, help=argparse.SUPPRESS)
    p.add_argument("--memory-shape", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--corpus-mb",
        type=lambda v: [float(x) for x in v.split(",")],
        default=None,
        help="lm_corpus: comma-separated corpus sizes in MB (default 10,200; 0.2,1 with --quick)",
    )
    p.add_argument("--corpus-case", default=None, help=argparse.SUPPRESS)
    p.add_argument("--ddp-case", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--ddp-data", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown or not args.sections:
        p.error(f"--only {args.only!r}: unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    if args.repeats is not None and args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.corpus_mb is not None and (len(args.corpus_mb) < 2 or min(args.corpus_mb) <= 0):
        p.error(f"--corpus-mb takes two or more positive sizes, e.g. 10,200; got {args.corpus_mb}")
    return args


def setup(args: argparse.Namespace) -> tuple[torch.device, int]:
    """Resolve the device and pin torch's thread count to the cores this process may use."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here; use --device cpu")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # --quick serves tests, which share the machine with other work: a contended OpenMP barrier costs far more
    # than two threads gain on tiny shapes (measured: 0.5 ms -> 140 ms per call with both cores busy elsewhere).
    threads = args.threads or (1 if args.quick else usable)
    torch.set_num_threads(threads)  # fixed, so runs are comparable and no thread oversubscribes the cores
    return device, threads


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() is empty on Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages: other work on the machine is the main source of noise in these timings."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def main(argv: list[str] | None = None) -> None:
    """Run the selected benchmarks and print the JSON."""
    args = parse_args(argv)
    stdout = sys.stdout
    if args.corpus_case is not None:
        # Threads as a training run has them (all cores), so setup() is not called either.
        with contextlib.redirect_stdout(sys.stderr):
            result = corpus_case(args.corpus_case, args.quick)
        print(json.dumps(result), file=stdout)
        return
    if args.ddp_case is not None:
        # Threads are Lightning's business here (cores / processes), so setup() is not called.
        with contextlib.redirect_stdout(sys.stderr):
            result = ddp_case(args.ddp_case, args.ddp_data, args.quick)
        if result:
            print(json.dumps(result), file=stdout)
        return
    device, threads = setup(args)
    if args.memory_case is not None:
        shape = tuple(int(v) for v in args.memory_shape.split(","))
        with contextlib.redirect_stdout(sys.stderr):
            result = memory_case(args.memory_case, shape, device)
        print(json.dumps(result), file=stdout)
        return

    load = _loadavg()
    if device.type == "cpu" and load is not None and load[0] > 0.5:
        # Other processes on these cores slow down every OpenMP barrier; the ratios survive better than the times.
        log(f"warning: load average {load[0]:.1f} before starting; timings will be inflated and noisy")
    start = time.perf_counter()
    result: dict[str, Any] = {
        "meta": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "quick": args.quick,
            "sections": args.sections,
            "mmattn_fused_attn_env": os.environ.get("MMATTN_FUSED_ATTN"),
            "loadavg_start": load,
        }
    }
    # Anything a library prints must not corrupt the JSON on stdout.
    with contextlib.redirect_stdout(sys.stderr):
        seconds = {}
        for section, run in (
            ("attention", lambda: bench_attention(args, device)),
            ("positions", lambda: bench_positions(args, device)),
            ("vit", lambda: bench_vit(args, device)),
            ("memory", lambda: bench_memory(args, device, threads)),
            ("audio", lambda: bench_audio(args, device)),
            ("translation", lambda: bench_translation(args, device)),
            ("lm", lambda: bench_lm(args, device)),
            ("ddp", lambda: bench_ddp(args)),
            ("lm_corpus", lambda: bench_lm_corpus(args)),
            ("loader", lambda: bench_loader(args, log)),
        ):
            if section in args.sections:
                t0 = time.perf_counter()
                key = {
                    "vit": "vit_train_step",
                    "memory": "attention_memory",
                    "audio": "audio_pipeline",
                    "ddp": "ddp_scaling",
                    "lm": "lm_sampling",
                }.get(section, section)
                result[key] = run()
                seconds[key] = round(time.perf_counter() - t0, 2)
        if "vit_train_step" in result:
            import timm

            result["meta"]["timm"] = timm.__version__
        result["targets"] = check_targets(result)
        result["meta"]["section_seconds"] = seconds
        result["meta"]["loadavg_end"] = _loadavg()
        result["meta"]["elapsed_s"] = round(time.perf_counter() - start, 2)
        log(f"done in {result['meta']['elapsed_s']:.1f} s")
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text, file=stdout)


if __name__ == "__main__":
    main()
