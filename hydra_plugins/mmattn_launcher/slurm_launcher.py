"""hydra-submitit-launcher's SLURM launcher, which also says, while it waits, where each job stands in the queue.

configs/hydra/launcher/slurm.yaml names it. Hydra imports every module here at start-up to find its plugins, so
mmattn itself is imported only when the launcher runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher import submitit_launcher


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """Submit and wait as hydra-submitit-launcher does, while a thread reports each job's state and pending reason."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit the sweep's jobs and return their results; end with one line for a job that can never give one.

        A job cancelled (or failed) before it ran leaves submitit waiting forever where SLURM has no accounting;
        the queue watcher then interrupts the wait, and its error, not the interrupt, is what the user sees.
        """
        from mmattn.cli.errors import debug_requested, fail
        from mmattn.cli.slurm_queue import QueueWatcher

        # submitit runs nodes x tasks_per_node tasks per job; each writes its own result.
        tasks = int(self.params.get("nodes") or 1) * int(self.params.get("tasks_per_node") or 1)
        watcher = QueueWatcher(self.params["submitit_folder"], tasks)
        try:
            with watcher:
                return super().launch(job_overrides, initial_job_idx)
        except KeyboardInterrupt:
            if watcher.error is None:  # the user's Ctrl-C
                raise
            if debug_requested():
                raise watcher.error from None
            fail(str(watcher.error))
