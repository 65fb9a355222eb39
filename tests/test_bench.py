"""scripts/bench.py as a user runs it: a real subprocess whose stdout must be exactly one JSON object.

Only the structure is checked, and that every ratio is a positive finite number: timings depend on the machine and its
load, so their values are never asserted here.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


def _positive_finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


# The sections that start processes of their own (DDP ranks, corpus cases) run in one bench process, the others in
# a second one beside it: --quick runs on one thread, so one process leaves a core idle. Setup time of this module,
# measured here: 42.7-50.5 s (mean 46) split, against 45.9-56.8 s (mean 51) in one process.
GROUPS = ("ddp,lm_corpus", "attention,positions,vit,memory,audio,translation,lm,loader")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[tuple[dict, Path]]]:
    """`--quick` runs of every section (under a minute on 2 cores), shared by the tests of this module: the
    processes' results merged, and each one's own output with its --out file."""
    root = tmp_path_factory.mktemp("bench")
    outs = [root / "sub" / "bench_0.json", *(root / f"bench_{i}.json" for i in range(1, len(GROUPS)))]
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "--quick", "--only", only, "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for only, out in zip(GROUPS, outs)
    ]
    runs = []
    try:
        for proc, out in zip(procs, outs):
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, stderr[-3000:]
            runs.append((json.loads(stdout), out))  # fails if anything but the JSON reached stdout
    finally:
        for proc in procs:
            proc.kill()  # a failed one leaves no other running
    merged = {k: v for result, _ in runs for k, v in result.items() if k not in ("meta", "targets")}
    merged["targets"] = {k: v for result, _ in runs for k, v in result.get("targets", {}).items()}
    return merged, runs


@pytest.mark.slow
def test_meta_and_out_file(quick_run: tuple[dict, list[tuple[dict, Path]]]) -> None:
    sections = set()
    for result, out in quick_run[1]:
        assert json.loads(out.read_text()) == result
        meta = result["meta"]
        assert meta["device"] == "cpu" and meta["quick"] is True
        assert isinstance(meta["torch"], str)
        # timm's version is recorded by the section that compares against timm.
        assert isinstance(meta.get("timm"), str) == ("vit_train_step" in meta["section_seconds"])
        assert isinstance(meta["threads"], int) and meta["threads"] >= 1
        assert _positive_finite(meta["elapsed_s"])
        sections |= set(meta["section_seconds"])
    assert sections == {
        "attention",
        "positions",
        "vit_train_step",
        "attention_memory",
        "audio_pipeline",
        "translation",
        "lm_sampling",
        "ddp_scaling",
        "lm_corpus",
        "loader",
    }


@pytest.mark.slow
def test_attention_section(quick_run: tuple[dict, list[tuple[dict, Path]]]) -> None:
    results = quick_run[0]["attention"]["results"]
    assert len(results) >= 2 and any(r["shape"]["causal"] for r in results)
    for r in results:
        assert set(r["shape"]) == {"B", "N", "D", "H", "causal"}
        assert set(r["median_s"]) == {"ours", "torch_mha", "bare"}
        assert set(r["ratio"]) == {"ours/torch_mha", "ours/bare"}
        assert all(_positive_finite(v) for v in [*r["median_s"].values(), *r["ratio"].values()]), r
        # The candidates compute the same function; a wrong weight copy would make the timing comparison moot.
        assert all(diff < 1e-4 for diff in r["max_abs_diff_vs_ours"].values()), r["max_abs_diff_vs_ours"]


@pytest.mark.slow
def test_positions_section(quick_run: tuple[dict, list[tuple[dict, Path]]]) -> None:
    pos = quick_run[0]["positions"]
    assert pos["shape"]["grid"] == [4, 4]
    schemes = {"rotary", "alibi", "t5", "rotary2d", "rotary2d_mixed", "random+rotary"}
    assert set(pos["encoder"]["ratio"]) == {f"{k}/none" for k in schemes}
    assert set(pos["decode"]["ratio"]) == {"rotary/none", "alibi/none", "t5/none"}
    values = [*pos["encoder"]["median_s"].values(), *pos["encoder"]["ratio"].values(), *pos["decode"]["ratio"].values()]
    assert all(_positive_finite(v) for v in values), pos


@pytest.mark.slow
def test_vit_section(quick_run: tuple[dict, list[tuple[dict, Path]]]) -> None:
    vit = quick_run[0]["vit_train_step"]
    assert vit["model"] == "vit_tiny_patch16_224"
    assert set(vit["median_s"]) == {"ours", "timm"}
    assert set(vit["ratio"]) == {"ours/timm"}
    assert all(_positive_finite(v) for v in [*vit["median_s"].values(), *vit["ratio"].values()]), vit
    assert vit["max_abs_logit_diff"] < 1e-4


@pytest.mark.slow
def test_memory_section(quick_run: tuple[dict, list[tuple[dict, Path]]]) -> None:
    mem = quick_run[0]["attention_memory"]
    assert set(mem["shape"]) == {"B", "N", "D", "H"}
    assert set(mem["peak_increase_mib"]) == {"fused", "explicit", "need_weights"}
    assert all(_positive_finite(v) for v in mem["peak_increase_mib"].values()), mem
    assert all(_positive_finite(v) for v in mem["ratio"].values()), mem["ratio"]
    assert _positive_finite(mem["theoretical_score_matrix_mib"])


@pytest.mark.slow
def test_audio_section(quick_run: tuple[dict, list[tuple[dict, Path]]]) -> None:
    cases = {c["case"]: c for c in quick_run[0]["audio_pipeline"]["results"]}
    assert set(cases) == {"demo", "1s_ast_tiny"}  # --quick leaves out the 10 s case
    for case in cases.values():
        assert set(case["clips_per_s"]) == {"read_fbank_per_clip", "fbank_batched", "train_step"}
        assert all(_positive_finite(v) for v in case["clips_per_s"].values()), case
        assert _positive_finite(case["pipeline_over_train"]) and case["workers_needed"] >= 1
    assert cases["demo"]["tokens"] == 6 * 8 + 2 and cases["1s_ast_tiny"]["tokens"] == 12 * 12 + 2


@pytest.mark.slow
def test_translation_section(quick_run: tuple[dict, list[tuple[dict, Path]]]) -> None:
    tr = quick_run[0]["translation"]
    assert set(tr["decode"]) == {"16"}
    d = tr["decode"]["16"]
    assert set(d["median_s"]) == {"cached", "recompute"} and _positive_finite(d["speedup"])
    step = tr["train_step"]
    assert set(step["tokens_per_s"]) == {"ours", "torch"}
    assert all(_positive_finite(v) for v in step["tokens_per_s"].values())
    # Same size: the two models hold the same number of parameters.
    assert step["params"]["ours"] == step["params"]["torch"]


@pytest.mark.slow
def test_lm_section(quick_run: tuple[dict, list[tuple[dict, Path]]]) -> None:
    lm = quick_run[0]["lm_sampling"]
    assert lm["shape"]["tokens"] == 16 and set(lm["tokens_per_s"]) == {"cached", "recompute"}
    assert all(_positive_finite(v) for v in lm["tokens_per_s"].values())
    assert lm["ratio"]["cached/recompute"] == pytest.approx(lm["median_s"]["cached"] / lm["median_s"]["recompute"])


@pytest.mark.slow
def test_ddp_section(quick_run: tuple[dict, list[tuple[dict, Path]]]) -> None:
    ddp = quick_run[0]["ddp_scaling"]
    one, two = ddp["cases"]["1"], ddp["cases"]["2"]
    assert (one["processes"], two["processes"]) == (1, 2)
    # Lightning splits the cores between CPU ranks: the 2-process run has half the threads per process.
    assert two["threads_per_process"] == max(1, one["threads_per_process"] // 2)
    assert all(_positive_finite(c["samples_per_s"]) and c["epoch_seconds"] for c in (one, two))
    assert two["samples_per_epoch"] % (2 * 128) == 0  # whole batches of 128 on each of the two ranks
    assert ddp["ratio"]["2proc/1proc samples_per_s"] == pytest.approx(two["samples_per_s"] / one["samples_per_s"])


@pytest.mark.slow
def test_lm_corpus_section(quick_run: tuple[dict, list[tuple[dict, Path]]]) -> None:
    corpus = quick_run[0]["lm_corpus"]
    assert set(corpus["cases"]) == {"0.2", "1"}  # --quick: 0.2 and 1 MB instead of 10 and 200
    for size, case in corpus["cases"].items():
        assert case["corpus_mb"] == pytest.approx(float(size), rel=0.05)
        assert case["tokens"]["train"] > case["tokens"]["val"] > 0 and case["train_steps"] == 3
        assert case["token_file_mb"] == pytest.approx(2 * sum(case["tokens"].values()) / 1e6)  # uint16 ids
        peaks = [case[k] for k in ("bpe_peak_rss_mib", "tokenize_peak_rss_mib", "train_peak_rss_mib")]
        assert all(_positive_finite(v) for v in [*peaks, case["tokenize_mb_per_s"], case["train_s"]]), case
        assert case["process_peak_rss_mib"] >= case["rss_after_imports_mib"]["VmRSS"] - 1
        assert set(case["rss_after_train_mib"]) == {"VmRSS", "RssAnon", "RssFile"}
    assert all(_positive_finite(v) for v in corpus["ratio"].values()), corpus["ratio"]


@pytest.mark.slow
def test_loader_section(quick_run: tuple[dict, list[tuple[dict, Path]]]) -> None:
    cases = quick_run[0]["loader"]["cases"]
    assert set(cases) == {"images", "audio"}
    for case in cases.values():
        assert set(case["loader"]) == {f"{f}/{w}" for f in ("files", "shards") for w in (0, 1, 2)}
        for rate in case["loader"].values():
            # Every loader delivered the whole training split (the demos' drop_last keeps whole batches only).
            assert case["train_items"] - 16 < rate["items"] <= case["train_items"], (rate, case["train_items"])
            assert _positive_finite(rate["samples_per_s"]) and _positive_finite(rate["mb_per_s"])
        assert _positive_finite(case["model_samples_per_s"]) and _positive_finite(case["encoded_bytes_per_item"])
        assert len(case["ratio"]) == 6 and all(_positive_finite(v) for v in case["ratio"].values())


@pytest.mark.slow
def test_targets_listed(quick_run: tuple[dict, list[tuple[dict, Path]]]) -> None:
    targets = quick_run[0]["targets"]
    assert set(targets) == {
        "attention ours/torch_mha",
        "attention ours/bare",
        "vit_train_step ours/timm",
        "seq2seq_train_step ours/torch",  # --quick decodes 16 tokens, so the 128-token target is not listed
        "lm_corpus process_peak_rss largest/smallest",
        *(f"loader {m} {r}" for m in ("images", "audio") for r in ("model/shards", "files/shards")),
    }
    for t in targets.values():
        assert _positive_finite(t["worst"]) and _positive_finite(t["limit"]) and isinstance(t["pass"], bool)


def test_unknown_section_is_rejected() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "attention,speed"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "speed" in proc.stderr and proc.stdout == ""
