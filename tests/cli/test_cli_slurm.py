"""On a real SLURM cluster (scripts/slurm/local_cluster.sh, started by .ci/run): launcher sweeps, a 2-task DDP job,
preemption both ways (`scontrol requeue` of a launcher job; the time-limit warning signal to an sbatch job), requests
the partition cannot hold (stopped before submission) and jobs that pend (reported while the launcher waits)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import submitit
import torch
from mmattn_testing import HELPERS, TINY_TRAIN, cli_path, metric_steps, metric_values

from mmattn.cli.cluster import PreflightChecks
from mmattn.cli.slurm_queue import SlurmJobError, wait_for_jobs

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "scripts" / "slurm" / "local_cluster.sh"
SBATCH = REPO / "scripts" / "slurm" / "train.sbatch"
# The ddp_cpu job of the preemption tests: 2 tasks x 2 batches per epoch x 8 epochs = 16 steps, paced at 0.3 s.
PREEMPT = [
    *[o for o in TINY_TRAIN if not o.startswith(("trainer.max_epochs", "+trainer.limit_train_batches"))],
    "trainer=ddp_cpu",
    "trainer.max_epochs=8",
    "callbacks.last_checkpoint.train_time_interval=null",
    "callbacks.last_checkpoint.every_n_train_steps=4",
]
PACE = ["+callbacks.pace._target_=mmattn_probes.Pace", "+callbacks.pace.seconds=0.3"]
SLURM_LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1"]

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def slurm_conf() -> str:
    """SLURM_CONF of the running test cluster; skip (with how to start it) when no cluster answers."""
    conf = (
        os.environ.get("SLURM_CONF")
        or subprocess.run(["bash", str(CLUSTER), "conf"], capture_output=True, text=True).stdout.strip()
    )
    status = subprocess.run(
        ["bash", str(CLUSTER), "status"], capture_output=True, text=True, env={**os.environ, "SLURM_CONF": conf}
    )
    if status.returncode != 0:
        pytest.skip(
            f"no SLURM cluster is up ({status.stdout.strip()}); start one: bash {CLUSTER.relative_to(REPO)} start"
        )
    return conf


@pytest.fixture
def slurm_env(probe_env: dict[str, str], slurm_conf: str, tmp_path: Path):
    """Environment of the submitting process (sbatch exports it to the jobs); cancels the test's jobs afterwards."""
    env = {**probe_env, "SLURM_CONF": slurm_conf}
    yield env
    jobs = _queued_from(tmp_path, env)  # left over only when the test failed
    if jobs:
        subprocess.run(["scancel", *jobs], env=env)


def _queued_from(directory: Path, env: dict[str, str]) -> list[str]:
    """Pending or running jobs submitted from `directory` (their working directory)."""
    listing = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True, env=env).stdout
    return [
        line.split()[0]
        for line in listing.splitlines()
        if line.split()[1:] and line.split()[1].startswith(str(directory))
    ]


def _node_cpus(env: dict[str, str]) -> int:
    """CPUs of the largest node of partition debug."""
    out = subprocess.run(["sinfo", "-h", "-N", "-p", "debug", "-o", "%c"], capture_output=True, text=True, env=env)
    return max(int(cpus) for cpus in out.stdout.split())


def _job(job_id: str, env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, env=env).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _train_steps(csv_path: Path) -> int:
    return max(metric_steps(csv_path).get("train/loss", [-1])) if csv_path.is_file() else -1


def _restart_when_requeued(job_id: str, env: dict[str, str]) -> None:
    """Wait until SLURM has requeued the job (it then waits for its BeginTime) and the node has finished cleaning up
    after it, then let it start now. (Started while slurmd still completes the old run, SLURM kills the new one:
    "Job credential revoked".)"""

    def requeued() -> bool:
        job = _job(job_id, env)
        return job.get("Restarts") == "1" and job.get("JobState") == "PENDING"

    def node_idle() -> bool:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=env).stdout.split()
        return states == ["idle"]

    _wait(requeued, 120, f"job {job_id} requeued")
    _wait(node_idle, 120, "the node to finish the interrupted run")
    # slurmd revokes the old run's credentials at whole-second resolution: a new start in that same second is killed
    # as "Job credential revoked" (seen under load, 0.4 s after the requeue). Start in a later second.
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], check=True, env=env)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, slurm_conf: str) -> Path:
    """The preemption job's config run without interruption (Lightning's own 2-process DDP), for comparison."""
    cwd = tmp_path_factory.mktemp("uninterrupted")
    run = cwd / "run"
    env = {**os.environ, "PYTHONPATH": str(HELPERS), "MMATTN_DATA_DIR": str(data_dir)}
    env.pop("MMATTN_RUN_DIR", None)
    result = subprocess.run(
        [cli_path("mmattn-train"), *PREEMPT, f"hydra.run.dir={run}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return run


def _compare_with(uninterrupted: Path, run: Path, log: str) -> None:
    """The interrupted job stopped mid-training and, resumed, ended exactly like the uninterrupted run."""
    saved = [int(n) for n in re.findall(r"received: saving \S+preempted.ckpt at global step (\d+)", log)]
    assert len(saved) == 1 and 5 <= saved[0] < 16, saved

    ref_ckpt = torch.load(uninterrupted / "checkpoints" / "last.ckpt", weights_only=True)
    got_ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert got_ckpt["global_step"] == ref_ckpt["global_step"] == 16
    ref, got = (metric_steps(r / "csv" / "version_0" / "metrics.csv") for r in (uninterrupted, run))
    assert got["train/loss"] == list(range(16))
    assert got == ref  # every metric logged at the same steps, once
    # The same run: the same batches on each rank give the same loss at every step (gloo's sums may round apart).
    ref_loss, got_loss = (
        metric_values(r / "csv" / "version_0" / "metrics.csv", "train/loss") for r in (uninterrupted, run)
    )
    assert got_loss.keys() == ref_loss.keys()
    assert all(got_loss[s] == pytest.approx(ref_loss[s], rel=1e-6, abs=0) for s in ref_loss), (got_loss, ref_loss)
    assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    assert not (run / "checkpoints" / "preempted.ckpt").exists()
    assert len(list(run.rglob("metrics.json"))) == 1


def _sweep(env: dict[str, str], cwd: Path, *overrides: str) -> Path:
    """Run `mmattn-train -m hydra/launcher=slurm ...` on the test cluster to the end; return its sweep directory."""
    args = ["-m", *SLURM_LAUNCHER, "paths.log_dir=logs", *TINY_TRAIN, *overrides]
    result = subprocess.run(
        [cli_path("mmattn-train"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (sweep,) = (cwd / "logs" / "train" / "multiruns").iterdir()
    return sweep


def test_multirun_of_two_jobs_through_the_slurm_launcher(slurm_env, tmp_path: Path) -> None:
    sweep = _sweep(slurm_env, tmp_path, "seed=1,2")
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]
    for job in jobs:
        assert {"val/acc", "test/acc"} <= set(json.loads((sweep / job / "metrics.json").read_text()))
    submission = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-1" in submission and "#SBATCH --signal=USR2@120" in submission
    assert "#SBATCH --requeue" in submission and "#SBATCH --partition=debug" in submission


def test_two_task_ddp_job_writes_its_metrics_once(slurm_env, tmp_path: Path) -> None:
    sweep = _sweep(slurm_env, tmp_path, "trainer=ddp_cpu")
    run = sweep / "0"
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "checkpoints", "csv", "metrics.json", "train.log"]
    assert len(list(tmp_path.rglob("metrics.json"))) == 1
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.out"))
    assert "MEMBER: 1/2" in logs and "MEMBER: 2/2" in logs  # two srun tasks, one DDP group
    assert "--ntasks-per-node=2" in next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    assert (
        torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    )  # limit_train_batches=2 on each rank


def test_scontrol_requeue_of_a_launcher_job_resumes_from_its_checkpoint(
    slurm_env, uninterrupted, tmp_path: Path
) -> None:
    args = ["-m", *SLURM_LAUNCHER, "paths.log_dir=logs", *PREEMPT, *PACE]
    launcher = subprocess.Popen(
        [cli_path("mmattn-train"), *args],
        cwd=tmp_path,
        env=slurm_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _preempt_through_the_launcher(launcher, slurm_env, uninterrupted, tmp_path)
    finally:
        launcher.kill()


def _preempt_through_the_launcher(launcher: subprocess.Popen, slurm_env, uninterrupted: Path, tmp_path: Path) -> None:
    sweeps = tmp_path / "logs" / "train" / "multiruns"
    _wait(lambda: sweeps.is_dir() and any((s / "0").is_dir() for s in sweeps.iterdir()), 120, "the job to start")
    (sweep,) = sweeps.iterdir()
    run = sweep / "0"
    _wait(lambda: _train_steps(run / "csv" / "version_0" / "metrics.csv") >= 5, 120, "step 5")
    # One job of a sweep: submitit submits it as a plain job (folder <id>), several as an array (<id>_<n>).
    job_id = next(p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+(_0)?", p.name))
    # Preemption or an operator: SLURM sends SIGTERM, waits KillWait, requeues the job.
    subprocess.run(["scontrol", "requeue", job_id], check=True, env=slurm_env)
    _restart_when_requeued(job_id, slurm_env)
    out, _ = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, out[-4000:]
    logs = "".join(p.read_text() for p in (sweep / ".submitit" / job_id).glob("*_log.out"))
    assert "SIGTERM received: saving" in logs and "not requeued" in logs  # SLURM requeued it
    assert "resuming from" in logs and "Restored all states from the checkpoint" in logs
    _compare_with(uninterrupted, run, logs)


def test_time_limit_signal_requeues_an_sbatch_job_which_resumes(slurm_env, uninterrupted, tmp_path: Path) -> None:
    env = {**slurm_env, "MMATTN_TRAIN": cli_path("mmattn-train")}
    submit = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--gpus-per-node=0",
            "--ntasks-per-node=2",
            "--cpus-per-task=1",
            "--time=20",
            str(SBATCH),
            *PREEMPT,
            *PACE,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    job_id = submit.stdout.strip()
    run = tmp_path / "outputs" / "slurm" / f"mmattn_{job_id}"
    _wait(lambda: _train_steps(run / "csv" / "version_0" / "metrics.csv") >= 5, 180, "step 5")
    # What SLURM sends 120 s before the time limit (#SBATCH --signal=USR2@120), to every task; the job requeues
    # itself (rank 0, while the other rank waits: srun --kill-on-bad-exit would otherwise kill rank 0 first).
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, env=env)
    _restart_when_requeued(job_id, env)
    _wait(lambda: _job(job_id, env).get("JobState") in ("COMPLETED", "FAILED", "CANCELLED"), 300, "the job to finish")
    output = (tmp_path / f"slurm-mmattn-{job_id}.out").read_text()
    assert _job(job_id, env)["JobState"] == "COMPLETED", output[-4000:]
    assert "SIGUSR2 received: saving" in output and f"requeued SLURM job {job_id}" in output
    assert "(restart 1)" in output and "resuming from" in output
    _compare_with(uninterrupted, run, output)


def test_a_request_the_partition_cannot_hold_stops_before_submission(slurm_env, tmp_path: Path) -> None:
    cpus = _node_cpus(slurm_env)
    args = ["-m", "hydra/launcher=slurm", "hydra.launcher.partition=debug", f"hydra.launcher.cpus_per_task={cpus + 1}"]
    result = subprocess.run(
        [cli_path("mmattn-train"), *args, "paths.log_dir=logs"],
        cwd=tmp_path,
        env=slurm_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-4000:]
    assert result.stderr.strip().splitlines() == [
        f"mmattn-train: error: hydra.launcher.cpus_per_task={cpus + 1} x hydra.launcher.tasks_per_node=1 "
        f"(trainer.devices) asks for {cpus + 1} CPUs per node, but the nodes of partition debug have at most {cpus}; "
        f"set hydra.launcher.cpus_per_task={cpus}"
    ]
    assert not (tmp_path / "logs").exists() and _queued_from(tmp_path, slurm_env) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            ["hydra.launcher.partition=nosuch"],
            "hydra.launcher.partition=nosuch: SLURM has no partition nosuch; it has ",
            id="partition",
        ),
        pytest.param(
            ["trainer.num_nodes=2"],
            "hydra.launcher.nodes=2 (trainer.num_nodes) asks for 2 nodes, but partition debug gives at most 1; "
            "set trainer.num_nodes=1",
            id="nodes",
        ),
        pytest.param(
            ["trainer=ddp_cpu", "trainer.devices={more_cpus}"],
            "hydra.launcher.cpus_per_task=1 x hydra.launcher.tasks_per_node={more_cpus} (trainer.devices) asks for "
            "{more_cpus} CPUs per node, but the nodes of partition debug have at most {cpus}; "
            "set trainer.devices={cpus} and hydra.launcher.cpus_per_task=1",
            id="tasks",
        ),
        pytest.param(
            ["hydra.launcher.mem_gb=100000"],
            "hydra.launcher.mem_gb=100000 asks for 100000 GB per node, but the nodes of partition debug have at most",
            id="memory",
        ),
        pytest.param(
            ["trainer=gpu", "trainer.devices=1"],
            "hydra.launcher.gpus_per_node=1 (trainer.devices) asks for 1 GPUs per node, but the nodes of partition "
            "debug have none; choose a partition with GPUs",
            id="gpus",
        ),
    ],
)
def test_requests_are_checked_against_the_partition(
    slurm_conf, compose_cfg, capsys, monkeypatch, overrides: list[str], message: str
) -> None:
    monkeypatch.setenv("SLURM_CONF", slurm_conf)
    gres = subprocess.run(["sinfo", "-h", "-N", "-p", "debug", "-o", "%G"], capture_output=True, text=True).stdout
    if "GPUs" in message and "gpu" in gres:
        pytest.skip("the test cluster's node has GPUs (the case checks a partition without any)")
    cpus = _node_cpus(dict(os.environ))
    fill = {"cpus": cpus, "more_cpus": cpus + 1}
    launcher = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1"]
    cfg = compose_cfg("train", [*launcher, *(o.format(**fill) for o in overrides)], return_hydra_config=True)
    with pytest.raises(SystemExit) as stop:
        PreflightChecks().on_multirun_start(cfg)
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message.format(**fill) in lines[0], lines
    PreflightChecks().on_multirun_start(compose_cfg("train", launcher, return_hydra_config=True))  # fits: no stop


def test_the_launcher_reports_a_pending_job_and_stops_when_it_is_cancelled(slurm_env, tmp_path: Path) -> None:
    hold = "+hydra.launcher.additional_parameters.hold=true"
    launcher = subprocess.Popen(
        [cli_path("mmattn-train"), "-m", *SLURM_LAUNCHER, hold, "paths.log_dir=logs", *TINY_TRAIN],
        cwd=tmp_path,
        env=slurm_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watchdog = threading.Timer(120, launcher.kill)  # a held job waits forever: never hang the test
    watchdog.start()
    try:
        seen, held = "", None
        for line in launcher.stdout:
            seen += line
            held = re.search(r"SLURM job (\d+) is pending: JobHeldUser \(held; scontrol release (\d+) lets it", line)
            if held:
                break
        assert held and held[1] == held[2], seen
        subprocess.run(["scancel", held[1]], check=True, env=slurm_env)
        out, _ = launcher.communicate(timeout=60)
    finally:
        watchdog.cancel()
        launcher.kill()
    assert launcher.returncode == 1, seen + out
    assert f"mmattn-train: error: SLURM job {held[1]} ended CANCELLED before it ran; nothing was trained" in out
    # The queue watcher ended submitit's endless wait (its sacct polls fail on this cluster without accounting) by
    # interrupting it: the user sees the one line, not the interrupt.
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out


def test_a_job_that_will_never_start_is_reported_with_what_to_change(
    slurm_env, tmp_path: Path, caplog, monkeypatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", slurm_env["SLURM_CONF"])
    # sbatch accepts more CPUs per task than any node has; the job then pends with reason PartitionConfig.
    submit = subprocess.run(
        ["sbatch", "--parsable", f"--cpus-per-task={_node_cpus(slurm_env) + 1}", "--wrap", "true"],
        cwd=tmp_path,
        env=slurm_env,
        capture_output=True,
        text=True,
        check=True,
    )
    job_id = submit.stdout.strip()

    def cancel_once_reported() -> None:
        try:
            _wait(lambda: "will not start by itself" in caplog.text, 30, "the report of the stuck job")
        finally:
            subprocess.run(["scancel", job_id], env=slurm_env)

    caplog.set_level(logging.INFO, logger="mmattn.cli.slurm_queue")
    threading.Thread(target=cancel_once_reported, daemon=True).start()
    with pytest.raises(SlurmJobError, match=f"SLURM job {job_id} ended CANCELLED before it ran"):
        wait_for_jobs([submitit.SlurmJob(tmp_path / "%j", job_id)])
    assert caplog.messages[-2:] == [
        f"SLURM job {job_id} is pending: PartitionConfig",
        f"SLURM job {job_id} will not start by itself: it asks for more CPUs, GPUs or memory per node, or more nodes, "
        f"than partition debug has; cancel with scancel {job_id} and submit again with a smaller "
        "hydra.launcher.cpus_per_task, hydra.launcher.mem_gb, trainer.devices or trainer.num_nodes",
    ]
