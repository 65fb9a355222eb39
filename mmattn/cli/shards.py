"""`mmattn-shards data=...`: write every split of a datamodule as litdata shards, for `data.format=shards`; or, for
data whose prepared form is token files (a text folder), its tokenizer and token files, for `data.token_dir=...`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, open_dict

from mmattn.cli.errors import one_line_errors, run_cli

if TYPE_CHECKING:
    from rich.console import Console

    from mmattn.data.shard_data import ShardedData, SplitWritten
    from mmattn.data.token_files import TokenFileData


def write(cfg: DictConfig) -> list[SplitWritten]:
    """Prepare the configured data (demo data is generated here), write its splits into `cfg.out` with a progress
    bar, and print a summary of what was written and how to train from it.

    Returns:
        One `mmattn.data.shard_data.SplitWritten` per split (items, or tokens of a token file).

    Raises:
        ValueError: Data that cannot be written to shards, or no place to write them.
        ShardError: `cfg.out` holds shards of other data and `cfg.overwrite` is off.
    """
    from hydra.utils import instantiate

    from mmattn.cli import utils
    from mmattn.data.shard_data import ShardedData
    from mmattn.data.token_files import TokenFileData

    utils.make_paths_absolute(cfg)
    if "format" in cfg.data:
        with open_dict(cfg):
            # The command reads the dataset's files, whatever format training will read.
            cfg.data.format = "files"
    datamodule = instantiate(cfg.data)
    if isinstance(datamodule, ShardedData):
        return _write_shards(cfg, datamodule)
    if isinstance(datamodule, TokenFileData):
        return _write_token_dir(cfg, datamodule)
    raise ValueError(
        f"{type(datamodule).__name__} cannot be written to shards yet (it implements neither "
        "mmattn.data.shard_data.ShardedData nor mmattn.data.token_files.TokenFileData)"
    )


def _write_shards(cfg: DictConfig, datamodule: ShardedData) -> list[SplitWritten]:
    from hydra.utils import to_absolute_path
    from rich.console import Console

    from mmattn.data.shard_data import write_shards
    from mmattn.data.shards import is_url

    if cfg.get("out") is None:
        raise ValueError("no place to write the shards: set data.shards=<a folder or an s3://... URL> (or out=...)")
    out = str(cfg.out) if is_url(cfg.out) else to_absolute_path(str(cfg.out))
    datamodule.prepare_sources()
    console = Console(stderr=True)
    with _SplitProgress(console) as progress:
        written = write_shards(
            datamodule,
            out,
            seed=int(cfg.seed),
            chunk_bytes=cfg.chunk_bytes,
            overwrite=bool(cfg.overwrite),
            on_split=progress,
        )
    _summary(Console(), written, out)
    where = "" if out == cfg.data.get("shards") else f" data.shards={out}"
    Console().print(
        f"train from them: the same data options and data.format=shards{where}", markup=False, soft_wrap=True
    )
    return written


def _write_token_dir(cfg: DictConfig, datamodule: TokenFileData) -> list[SplitWritten]:
    from pathlib import Path

    from hydra.utils import to_absolute_path
    from rich.console import Console

    from mmattn.data.shards import is_url

    if cfg.get("out") is None or is_url(cfg.out):
        raise ValueError(
            f"{type(datamodule).__name__} is prepared as token files in a local folder (memory-mapped by every "
            "process): set out=<a folder on a disk all the run's nodes see>"
        )
    out = Path(to_absolute_path(str(cfg.out)))
    written = datamodule.write_token_dir(out)
    _summary(Console(), written, str(out), unit="tokens", what="token files")
    Console().print(
        f"train from them: the same data options and data.token_dir={out} data.tokenizer_dir={out / 'tokenizer'}",
        markup=False,
        soft_wrap=True,
    )
    return written


class _SplitProgress:
    """A rich progress bar per split (items, MB, time), as the `on_split` callback of `write_shards`."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description:>5}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("items  {task.fields[mb]:.1f} MB"),
            TimeElapsedColumn(),
            console=console,
        )

    def __enter__(self) -> _SplitProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, split: str, total: int) -> Callable[[int], None]:
        task = self.bar.add_task(split, total=total, mb=0.0)
        written = [0]

        def item(num_bytes: int) -> None:
            written[0] += num_bytes
            self.bar.update(task, advance=1, mb=written[0] / 1e6)

        return item


def _summary(
    console: Console, written: list[SplitWritten], out: str, unit: str = "items", what: str = "shards"
) -> None:
    from rich.table import Table

    table = Table(title=f"mmattn-shards: {out}")
    for name, justify in (("split", "left"), (unit, "right"), ("MB", "right"), ("seconds", "right"), ("", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for split in written:
        note = "up to date, kept" if split.up_to_date else "written"
        table.add_row(split.split, str(split.num_items), f"{split.num_bytes / 1e6:.1f}", f"{split.seconds:.1f}", note)
    total_mb = sum(split.num_bytes for split in written) / 1e6
    total_s = sum(split.seconds for split in written)
    table.add_row("total", str(sum(split.num_items for split in written)), f"{total_mb:.1f}", f"{total_s:.1f}", "")
    console.print(table)
    console.print(f"{what}: {out}", soft_wrap=True, markup=False, highlight=False)


@hydra.main(version_base="1.3", config_path="pkg://mmattn.configs", config_name="shards")
@one_line_errors
def _main(cfg: DictConfig) -> None:
    """Hydra entry point; see configs/shards.yaml for the options."""
    write(cfg)


def main() -> None:
    """Console script `mmattn-shards` (also `python -m mmattn.cli.shards`)."""
    run_cli(_main)


if __name__ == "__main__":
    main()
