"""Bad scale-out requests stop with one line before a run directory is made or a job is submitted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mmattn.cli.cluster import PreflightChecks, check_trainer, gpus_per_node, process_is_rank_zero
from mmattn.cli.slurm import check_partition, gres_gpus, time_limit_minutes
from mmattn.cli.slurm_queue import stuck_reason

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without GPUs")


def _stop(capsys, compose_cfg, overrides: list[str], multirun: bool = False) -> str:
    """Run the Hydra callback on a composed config; return its one stderr line (it must exit with status 2)."""
    cfg = compose_cfg("train", overrides, return_hydra_config=True)
    hook = PreflightChecks().on_multirun_start if multirun else PreflightChecks().on_run_start
    with pytest.raises(SystemExit) as info:
        hook(cfg)
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@NO_GPU
@pytest.mark.parametrize("preset", ["ddp", "gpu", "fsdp"])
def test_gpu_presets_without_gpus(capsys, compose_cfg, preset: str) -> None:
    line = _stop(capsys, compose_cfg, [f"trainer={preset}"])
    assert f"error: trainer={preset} asks for GPUs (trainer.accelerator=gpu) but torch sees no CUDA GPU" in line
    assert "use trainer=ddp_cpu" in line


def test_more_cpu_processes_than_cores(capsys, compose_cfg, monkeypatch) -> None:
    for var in ("SLURM_NTASKS", "LOCAL_RANK", "SUBMITIT_LOCAL_JOB_ID"):
        monkeypatch.delenv(var, raising=False)
    cores = len(os.sched_getaffinity(0))
    line = _stop(capsys, compose_cfg, ["trainer=ddp_cpu", f"trainer.devices={cores + 1}"])
    assert f"trainer.devices={cores + 1} starts {cores + 1} CPU processes but" in line
    assert f"has {cores} usable cores; set trainer.devices={cores} or fewer" in line


def test_fsdp_on_cpu_and_zero_devices(capsys, compose_cfg) -> None:
    line = _stop(capsys, compose_cfg, ["trainer=fsdp", "trainer.accelerator=cpu"])
    assert "trainer=fsdp shards the model over GPUs with FSDP" in line and "trainer=ddp_cpu" in line
    line = _stop(capsys, compose_cfg, ["trainer=cpu", "trainer.devices=0"])
    assert "trainer.devices=0 asks for no device" in line


def test_a_launcher_without_multirun_is_refused(capsys, compose_cfg) -> None:
    line = _stop(capsys, compose_cfg, ["hydra/launcher=slurm"])
    assert "hydra/launcher=slurm only submits under --multirun; add -m" in line


def test_slurm_launcher_needs_partition_devices_and_sbatch(capsys, compose_cfg, monkeypatch) -> None:
    line = _stop(capsys, compose_cfg, ["hydra/launcher=slurm"], multirun=True)
    assert "hydra/launcher=slurm needs hydra.launcher.partition: the SLURM partition" in line
    line = _stop(
        capsys, compose_cfg, ["hydra/launcher=slurm", "hydra.launcher.partition=p", "trainer.devices=-1"], True
    )
    assert "trainer.devices must be the number of devices per node (e.g. trainer.devices=8), not -1" in line
    monkeypatch.setenv("PATH", "/nonexistent")
    line = _stop(capsys, compose_cfg, ["hydra/launcher=slurm", "hydra.launcher.partition=p"], True)
    assert "submits with sbatch, which is not on the PATH" in line and "local_cluster.sh start" in line


def test_the_slurm_launcher_config_follows_the_trainer(compose_cfg) -> None:
    cfg = compose_cfg(
        "train",
        [
            "hydra/launcher=slurm",
            "hydra.launcher.partition=gpu",
            "trainer=ddp",
            "trainer.devices=8",
            "trainer.num_nodes=4",
        ],
        return_hydra_config=True,
    )
    launcher = cfg.hydra.launcher
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (4, 8, 8)
    assert launcher.signal_delay_s == 120 and launcher.additional_parameters.requeue is True
    assert launcher._target_.endswith("SlurmLauncher")
    cpu = compose_cfg("train", ["hydra/launcher=slurm", "trainer=ddp_cpu"], return_hydra_config=True)
    assert cpu.hydra.launcher.tasks_per_node == 2 and cpu.hydra.launcher.gpus_per_node is None
    local = compose_cfg("train", ["hydra/launcher=local", "trainer=ddp_cpu"], return_hydra_config=True)
    assert local.hydra.launcher.tasks_per_node == 2 and local.hydra.launcher._target_.endswith("LocalLauncher")


def test_good_requests_pass_and_helpers(compose_cfg, monkeypatch) -> None:
    check_trainer(compose_cfg("train", ["trainer=ddp_cpu"]).trainer, "ddp_cpu")
    assert gpus_per_node("gpu", 8) == 8 and gpus_per_node("cpu", 2) is None
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert not process_is_rank_zero()
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert process_is_rank_zero()


def test_slurm_values_that_the_partition_check_reads() -> None:
    # scontrol's MaxTime, sinfo's GRES; the request itself is checked against the test cluster (test_cli_slurm.py).
    assert [time_limit_minutes(t) for t in ("1-00:00:00", "04:00:00", "30:00", "45", "2-12")] == [
        1440,
        240,
        30,
        45,
        3600,
    ]
    assert time_limit_minutes("UNLIMITED") is None and time_limit_minutes("INFINITE") is None
    assert [gres_gpus(g) for g in ("gpu:4", "gpu:a100:4(S:0-1),nvme:1", "(null)", "gpu:2,gpu:v100:1")] == [4, 4, 0, 3]
    assert stuck_reason("QOSMaxWallDurationPerJobLimit", "gpu")[0].startswith("it exceeds a per-job limit")
    assert stuck_reason("Resources", "gpu") is None and stuck_reason("Priority", "gpu") is None


def test_partition_check_is_skipped_without_slurm_tools(compose_cfg, monkeypatch) -> None:
    # Submitting from a host without scontrol/sinfo: the request goes to sbatch unchecked, without a message.
    cfg = compose_cfg(
        "train",
        ["hydra/launcher=slurm", "hydra.launcher.partition=p", "hydra.launcher.cpus_per_task=4096"],
        return_hydra_config=True,
    )
    monkeypatch.setenv("PATH", "/nonexistent")
    check_partition(cfg.hydra.launcher)


@NO_GPU
@pytest.mark.slow
def test_cli_refuses_before_making_a_run_directory(run_cli, tmp_path: Path) -> None:
    result = run_cli("mmattn-train", "trainer=ddp", "paths.log_dir=logs", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mmattn-train: error: trainer=ddp asks for GPUs (trainer.accelerator=gpu) but torch sees no CUDA GPU on "
        f"{os.uname().nodename}; use trainer=ddp_cpu or trainer=cpu on this machine, or run on a GPU node"
    ]
    result = run_cli("mmattn-train", "-m", "hydra/launcher=slurm", "seed=1,2", "paths.log_dir=logs", cwd=tmp_path)
    assert result.returncode == 2 and "needs hydra.launcher.partition" in result.stderr
    assert not (tmp_path / "logs").exists()  # no run directory, no sweep directory, nothing submitted
