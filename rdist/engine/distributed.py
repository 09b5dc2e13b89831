"""Which process this is among those torchrun starts. Only rank 0 logs and writes files, so that
multi-GPU training (DDP over torchrun) can be added without touching the logging and saving code."""

from __future__ import annotations

import os
from dataclasses import dataclass

from rdist.errors import RdistError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks_from_env() -> Ranks:
    """RANK and WORLD_SIZE as torchrun sets them (0 and 1 when absent)."""
    try:
        ranks = Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))
    except ValueError:
        raise RdistError(f"RANK={os.environ.get('RANK')!r} and WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} must be "
                         "integers (as torchrun sets them)") from None
    if ranks.world_size > 1:
        # Each process would train the whole data set on its own: refuse rather than waste the GPUs.
        raise RdistError(f"WORLD_SIZE={ranks.world_size}: multi-GPU training is not supported yet; "
                         "run one process (without torchrun)")
    return ranks
