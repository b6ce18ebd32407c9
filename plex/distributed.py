"""One process per device (or several, ``plex label --processes-per-device``) with Lightning Fabric, for
the commands that spread texts over ranks (``plex label --devices``, ``plex explain --devices``).

A command calls :func:`launch` when :func:`several` says so; its function then runs on every rank with
a :class:`Ranks` (rank, world size, barrier, gather); a single process gets :data:`ONE_PROCESS`. Each
CPU rank takes its share of the node's cores, so N ranks do not each start as many threads as there
are cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from plex.config import ConfigError, check_positive

STRATEGIES = ("ddp", "ddp_spawn")


def several(devices: int | str, num_nodes: int, per_device: int = 1) -> bool:
    """Whether these settings ask for more than one process."""
    return str(devices) != "1" or num_nodes != 1 or per_device != 1


def check_launch(devices: int | str, num_nodes: int, strategy: str, per_device: int = 1) -> None:
    """One-line errors for launch settings Lightning would reject deep inside."""
    check_positive("--num-nodes", num_nodes)
    if isinstance(devices, int) and not isinstance(devices, bool) and devices < 1 and devices != -1:
        raise ConfigError(f"--devices must be a positive count (or -1, or 'auto'), got {devices!r}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy must be {' or '.join(STRATEGIES)}, got {strategy!r}")
    check_positive("--processes-per-device", per_device)
    if per_device > 1 and not (isinstance(devices, int) or str(devices).strip() in ("auto", "-1")
                               or str(devices).strip().isdigit()):
        raise ConfigError(f"with --processes-per-device, give --devices as a count (or -1, or 'auto'), "
                          f"not a list: got {devices!r}")


def _device_count(devices: int | str, accelerator: str) -> tuple[int, bool]:
    """How many devices ``devices`` names, and whether they are GPUs (for processes sharing devices)."""
    import torch

    if accelerator not in ("gpu", "cuda", "cpu", "auto"):
        raise ConfigError(f"--processes-per-device works with --accelerator gpu or cpu, got {accelerator!r}")
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if gpu and not torch.cuda.is_available():
        raise ConfigError(f"--accelerator {accelerator} asks for GPUs, but torch sees none here; "
                          "use --accelerator cpu")
    count = int(devices) if str(devices).strip() not in ("auto", "-1") else (torch.cuda.device_count() if gpu else 1)
    if gpu and count > torch.cuda.device_count():
        raise ConfigError(f"--devices {devices} asks for {count} GPUs, but torch sees {torch.cuda.device_count()}")
    return count, gpu


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


def launch(fn: Callable[..., Any], *args: Any, accelerator: str, devices: int | str, num_nodes: int, strategy: str,
           per_device: int = 1) -> Any:
    """Run ``fn(ranks, device, *args)`` on every rank (``device``: the rank's own, e.g. ``cuda:1``).

    ``ddp`` re-runs the command in each process (every process returns from it), ``ddp_spawn`` spawns
    them from this one (rank 0's result is returned here).

    With ``per_device`` above 1, ``per_device`` processes share each device: Lightning launches
    ``devices x per_device`` processes per node as CPU ranks (gloo, which is all the ranks need to
    coordinate), and local rank ``r`` runs its models on GPU ``r // per_device`` (or on the CPU).
    """
    from lightning.fabric import Fabric

    check_launch(devices, num_nodes, strategy, per_device)
    per_gpu = None  # processes per GPU when they share GPUs
    if per_device > 1:
        count, gpu = _device_count(devices, accelerator)
        accelerator, devices, per_gpu = "cpu", count * per_device, (per_device if gpu else None)
    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy)
    return fabric.launch(_on_rank, fn, num_nodes, per_gpu, *args)


def rank_device(local_rank: int, per_device: int) -> str:
    """The GPU of local rank ``local_rank`` when ``per_device`` processes share each GPU."""
    return f"cuda:{local_rank // per_device}"


def _on_rank(fabric, fn: Callable[..., Any], num_nodes: int, per_gpu: int | None, *args: Any) -> Any:
    import torch

    device = str(fabric.device)
    if per_gpu is not None:  # several processes per GPU, launched as CPU ranks
        device = rank_device(fabric.local_rank, per_gpu)
        torch.cuda.set_device(device)  # models placed on "cuda" (a teacher's own) land on this rank's GPU too
    if fabric.device.type == "cpu":  # the node's cores shared between its ranks
        per_node = max(1, fabric.world_size // max(1, num_nodes))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_node))
    result = fn(FabricRanks(fabric), device, *args)
    # Every rank is past its last collective call: take the process group down here, so that its communication
    # threads are joined now, not left to the interpreter's exit. (A spawned gloo rank aborted once in the test
    # suite with "terminate called without an active exception", SIGABRT; threads left running at exit are the
    # likely cause, not a proven one.)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return result
