"""One process per device with Lightning Fabric, for the commands that spread texts over ranks
(``plex label --devices``, ``plex explain --devices``).

A command calls :func:`launch` when :func:`several` says so; its function then runs on every rank with
a :class:`Ranks` (rank, world size, barrier, gather); a single process gets :data:`ONE_PROCESS`. Each
CPU rank takes its share of the node's cores, so N ranks do not each start as many threads as there
are cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from plex.config import ConfigError

STRATEGIES = ("ddp", "ddp_spawn")


def several(devices: int | str, num_nodes: int) -> bool:
    """Whether these settings ask for more than one process."""
    return str(devices) != "1" or num_nodes != 1


def check_launch(devices: int | str, num_nodes: int, strategy: str) -> None:
    """One-line errors for launch settings Lightning would reject deep inside."""
    if not isinstance(num_nodes, int) or isinstance(num_nodes, bool) or num_nodes < 1:
        raise ConfigError(f"--num-nodes must be a positive integer, got {num_nodes!r}")
    if isinstance(devices, int) and not isinstance(devices, bool) and devices < 1 and devices != -1:
        raise ConfigError(f"--devices must be a positive count (or -1, or 'auto'), got {devices!r}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy must be {' or '.join(STRATEGIES)}, got {strategy!r}")


class Ranks:
    """Rank, world size, barrier and gather of small Python objects; this base is a single process."""

    rank, world = 0, 1

    def barrier(self) -> None:
        pass

    def gather(self, obj: Any) -> list[Any]:
        return [obj]


ONE_PROCESS = Ranks()


class FabricRanks(Ranks):
    """The ranks of a launched Lightning Fabric."""

    def __init__(self, fabric) -> None:
        self.fabric, self.rank, self.world = fabric, fabric.global_rank, fabric.world_size

    def barrier(self) -> None:
        self.fabric.barrier()

    def gather(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def launch(fn: Callable[..., Any], *args: Any, accelerator: str, devices: int | str, num_nodes: int, strategy: str
           ) -> Any:
    """Run ``fn(ranks, device, *args)`` on every rank (``device``: the rank's own, e.g. ``cuda:1``).

    ``ddp`` re-runs the command in each process (every process returns from it), ``ddp_spawn`` spawns
    them from this one (rank 0's result is returned here).
    """
    from lightning.fabric import Fabric

    check_launch(devices, num_nodes, strategy)
    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy)
    return fabric.launch(_on_rank, fn, num_nodes, *args)


def _on_rank(fabric, fn: Callable[..., Any], num_nodes: int, *args: Any) -> Any:
    if fabric.device.type == "cpu":  # the node's cores shared between its ranks
        import torch

        per_node = max(1, fabric.world_size // max(1, num_nodes))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_node))
    return fn(FabricRanks(fabric), str(fabric.device), *args)
