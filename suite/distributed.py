"""Sharding a run across processes started by ``torchrun``.

Each rank takes every ``world``-th example (by position in the official order) and appends its own
``records.rank<N>.jsonl``; rank 0 merges after a barrier. The partition is disjoint, so no example can be
recorded twice, and a resume with another world size is still correct: what is done is read from every
rank's file before any rank starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def records_name(self) -> str:
        return "records.jsonl" if self.size == 1 else f"records.rank{self.rank}.jsonl"


def world() -> World:
    """The process's place in a torchrun launch (single process when not launched by torchrun)."""
    return World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def init_if_needed() -> World:
    """Join the process group torchrun set up (gloo: the runner only needs barriers, on CPU or GPU hosts)."""
    w = world()
    if w.size > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
    return w


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
