"""How the console scripts end on an error: one line for what the user can fix, the traceback for everything else.

mmattn's own checks raise exceptions whose message names the file, key or value and the fix; printed after a
traceback through Lightning's frames, that line is easy to miss. A console script's task function is therefore
decorated with `one_line_errors`: it prints `<prog>: error: <message>` and exits with status 1 when the exception was
raised by a `raise` statement in mmattn's own code (also inside a DataLoader worker or a Hydra instantiation).
Anything else (a bug, an error deep inside a library) goes on to Hydra's usual report with its traceback.
`--debug` (taken off the command line by `run_cli`), `MMATTN_DEBUG=1` or `HYDRA_FULL_ERROR=1` keep the traceback
for every error.
"""

from __future__ import annotations

import functools
import linecache
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

__all__ = ["DEBUG_ENV", "fail", "one_line_errors", "run_cli", "user_message"]

DEBUG_ENV = "MMATTN_DEBUG"
DEBUG_FLAG = "--debug"
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1]) + os.sep
# torch's DataLoader re-raises a worker's exception with the worker's traceback as text in the message.
_WORKER_TRACEBACK = "Original Traceback (most recent call last):"


def prog_name() -> str:
    """The console script's name as the user typed it (`mmattn-train`), for the start of an error line."""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "mmattn"


def fail(message: str, status: int = 1) -> None:
    """Print `<prog>: error: <message>` to stderr and exit with `status`."""
    print(f"{prog_name()}: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def _raised_by_us(filename: str, lineno: int) -> bool:
    """Whether line `lineno` of `filename` is a `raise` statement of mmattn's own code."""
    return filename.startswith(_PACKAGE_DIR) and linecache.getline(filename, lineno).strip().startswith("raise")


def _innermost(error: BaseException) -> tuple[str, int] | None:
    tb = error.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(Path(tb.tb_frame.f_code.co_filename).resolve()), tb.tb_lineno


def _from_worker(text: str) -> str | None:
    """The message of an exception that a DataLoader worker raised in our code, from torch's re-raised text."""
    trace = text.split(_WORKER_TRACEBACK, 1)[1]
    frames = re.findall(r'File "([^"]+)", line (\d+)', trace)
    if not frames or not _raised_by_us(str(Path(frames[-1][0]).resolve()), int(frames[-1][1])):
        return None
    # The traceback text ends with "<ExceptionType>: <message>".
    last = trace.rstrip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


def user_message(error: BaseException) -> str | None:
    """The one line to print for `error`, or None when its traceback should be shown (not one of our checks)."""
    from hydra.errors import HydraException, InstantiationException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        inner = user_message(error.__cause__)
        if inner is None:
            return None
        found = re.search(r"target '([^']+)'", str(error))
        key = re.search(r"full_key: (\S+)", str(error))
        where = f"{key.group(1)} ({found.group(1)})" if key and found else found.group(1) if found else ""
        return f"{where}: {inner}" if where else inner
    if isinstance(error, (HydraException, OmegaConfBaseException)):
        # A config error met while running (composition errors never reach the task function).
        return str(error).strip()
    text = str(error)
    if _WORKER_TRACEBACK in text:
        return _from_worker(text)
    site = _innermost(error)
    if site is None or not _raised_by_us(*site):
        return None
    return text.strip() or type(error).__name__


def debug_requested() -> bool:
    """Whether the user asked for full tracebacks: `--debug`, `MMATTN_DEBUG=1` or `HYDRA_FULL_ERROR=1`."""
    on = ("1", "true", "yes")
    if DEBUG_ENV in os.environ:
        return os.environ[DEBUG_ENV].lower() in on
    return DEBUG_FLAG in sys.argv[1:] or os.environ.get("HYDRA_FULL_ERROR", "").lower() in on


def run_cli(app: Callable[[], None]) -> None:
    """Run a Hydra entry point after taking `--debug` off the command line (Hydra would reject it)."""
    # DDP ranks that Lightning starts re-run this script without the flag: the variable carries the choice to them.
    debug = debug_requested()
    os.environ[DEBUG_ENV] = "1" if debug else "0"
    if debug:
        # Hydra's own report then shows the whole traceback, Hydra's and Lightning's frames included.
        os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.argv = [arg for arg in sys.argv if arg != DEBUG_FLAG]
    try:
        app()
    except KeyboardInterrupt:
        # The SLURM queue watcher interrupts a launcher that would wait forever for a job that can never run;
        # a user's Ctrl-C (no watcher error) stays an interrupt.
        from mmattn.cli.slurm_queue import stop_watching

        error = stop_watching()
        if error is None:
            raise
        if debug:
            raise error from None
        fail(str(error))


def one_line_errors(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Decorate a Hydra task function: an error from mmattn's own checks ends the program with one line."""

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            return task(cfg)
        except Exception as error:
            message = None if debug_requested() else user_message(error)
            if message is None:
                raise
            fail(message)

    return wrapper
