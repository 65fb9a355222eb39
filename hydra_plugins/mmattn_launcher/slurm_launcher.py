"""hydra-submitit-launcher's SLURM launcher, which also says, while it waits, where each job stands in the queue.

configs/hydra/launcher/slurm.yaml names it. Hydra imports every module here at start-up to find its plugins, so
mmattn itself is imported only when the launcher runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """Submit a sweep as hydra-submitit-launcher does; while waiting, report each job's state and pending reason."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit the sweep's jobs, wait for them while reporting the queue, return their results."""
        from mmattn.cli.errors import debug_requested, fail
        from mmattn.cli.slurm import SlurmJobError, wait_for_jobs

        jobs = self._submit(job_overrides, initial_job_idx)
        try:
            wait_for_jobs(jobs)
        except SlurmJobError as error:
            if debug_requested():
                raise
            fail(str(error))
        return [job.results()[0] for job in jobs]

    def _submit(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Any]:
        """The plugin's own `launch` (hydra-submitit-launcher 1.2) up to where it waits: one job array."""
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        assert self.config is not None  # set by Hydra's setup() before launch()
        folder_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=self.params["submitit_folder"],
            **{f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k == "max_num_timeout"},
        )
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k not in folder_keys}
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        return executor.map_array(self, *zip(*job_params))
