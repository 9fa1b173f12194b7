"""The ranks of a tokenize run: this process's rank and the few collectives the ranks need.

A :class:`Group` is started by ``torchrun`` (:meth:`Group.from_env`), by
``--workers`` through a file (:meth:`Group.from_file`), or is a lone process
(``Group()``); its collectives (gloo) do nothing when it is alone.
"""

import os
from datetime import timedelta

import torch.distributed as dist

__all__ = ["GROUP_TIMEOUT", "Group"]

GROUP_TIMEOUT = timedelta(days=7)  # ranks wait at the final barrier for the slowest one


class Group:
    """This process's rank among the ranks of a run, and the few collectives they need."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0, local_world: int = 1):
        self.rank, self.world = rank, world
        self.local_rank, self.local_world = local_rank, local_world
        self.initialized = False

    @classmethod
    def from_env(cls) -> "Group":
        """The rank torchrun started (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``)."""
        env = os.environ
        group = cls(
            int(env.get("RANK", 0)),
            int(env.get("WORLD_SIZE", 1)),
            int(env.get("LOCAL_RANK", 0)),
            int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))),
        )
        if group.world > 1:
            dist.init_process_group("gloo", timeout=GROUP_TIMEOUT)
            group.initialized = True
        return group

    @classmethod
    def from_file(cls, rank: int, world: int, path) -> "Group":
        """Local rank ``rank`` of ``world`` processes meeting through the file ``path``."""
        group = cls(rank, world, rank, world)
        dist.init_process_group(
            "gloo", init_method=f"file://{path}", rank=rank, world_size=world, timeout=GROUP_TIMEOUT
        )
        group.initialized = True
        return group

    def from_rank0(self, value):
        """Rank 0's ``value``, on every rank."""
        if not self.initialized:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.initialized:
            return [value]
        values = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def close(self):
        if self.initialized:
            dist.destroy_process_group()
            self.initialized = False
