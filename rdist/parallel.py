"""The processes `torchrun` starts, as rdist sees them: ranks, the process group, and the collectives that
training and evaluation share. Every collective here is the identity in one process.

    torchrun --nproc-per-node 4 -m rdist attack ...     (or distill, teacher train)

torch.distributed with one process per GPU (nccl) or per CPU process (gloo). The training side (DDP, sharded
batches, SyncBatchNorm) is `rdist.engine.ddp`; the sharded evaluation is `rdist.attacks.evaluator.evaluate`.

A gloo worker thread must never free a tensor that Python owns: it would need the GIL to do so, and at the
exit of a process whose group outlives its last collective (DistributedDataParallel keeps it alive past
`destroy_process_group`), CPython 3.11 ends any thread that asks for the GIL during finalisation with
pthread_exit, whose unwinding through the C++ destructor aborts the process ("terminate called without an
active exception"). So each collective below waits, before it returns, until the backend has let go of the
tensors it was given (`_run`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import re
import signal
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist

from rdist.device import default_device
from rdist.errors import RdistError
from rdist.utils import first_line

BACKENDS = ("nccl", "gloo")
_RELEASE_SECONDS = 1.0  # the longest a collective waits for gloo's worker to let go of its tensors (`_run`)
# How gloo and NCCL report a peer that died: a RuntimeError, not always a torch.distributed.DistError.
_COMMUNICATION_FAILURES = ("gloo", "NCCL", "Connection reset", "Connection closed", "ProcessGroup")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the `world_size` processes of a job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def ranks_from_env() -> Ranks:
    """RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them (0, 1 and 0 when absent)."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    try:
        rank, world_size, local_rank = (int(os.environ.get(name, default)) for name, default in zip(names, (0, 1, 0)))
    except ValueError:
        given = ", ".join(f"{name}={os.environ.get(name)!r}" for name in names)
        raise RdistError(f"{given} must be integers (as torchrun sets them); start rdist with torchrun") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise RdistError(f"RANK={rank} is not a rank of WORLD_SIZE={world_size}; start rdist with torchrun")
    return Ranks(rank, world_size, local_rank)


class RankError(RdistError):
    """A problem of this process alone (its GPU, a lost peer): every rank that meets one reports it."""


@dataclass(frozen=True)
class Group:
    """This process in the job torchrun started: its ranks, its device and the backend of the process group
    (None in one process, which has no group)."""

    ranks: Ranks
    device: torch.device
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.ranks.distributed

    @classmethod
    def start(cls, device: str | None = None, backend: str | None = None) -> "Group":
        """Join the job torchrun started (or stay one process) on this rank's device."""
        ranks = ranks_from_env()
        if backend is not None and backend not in BACKENDS:
            raise RdistError(f"--dist-backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
        if not ranks.distributed:
            return cls(ranks, default_device(device))
        dev = _rank_device(ranks, device)
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        if backend == "nccl" and dev.type != "cuda":
            raise RdistError("--dist-backend nccl runs on CUDA GPUs only but the device is the CPU; use "
                             "--dist-backend gloo (the CPU default) or --device cuda")
        if not dist.is_initialized():
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            _join_group(backend, dev if backend == "nccl" else None)
            # One group for the process's life: a process that trains or attacks more than once (--seeds, the
            # models of `rdist compare`) joins it again, since a second init after a destroy can hang under
            # torchrun's rendezvous store.
            atexit.register(_close_group)
        return cls(ranks, dev, backend)

    def check_same(self, **what: Any) -> None:
        """Refuse to start when the ranks run other rdist/torch versions or another configuration."""
        if not self.distributed:
            return
        mine = {"rdist": version("rdist"), "torch": torch.__version__, **what}
        everyone = gather_objects(mine)
        reference = everyone[0]
        for rank, theirs in enumerate(everyone):
            differences = [f"{key} {reference.get(key)!r} (rank 0) vs {theirs.get(key)!r} (rank {rank})"
                           for key in sorted(set(reference) | set(theirs)) if reference.get(key) != theirs.get(key)]
            if differences:
                raise RdistError(f"the processes of this job differ: {'; '.join(differences)}; start every "
                                 "process with the same rdist install and the same command")

    def share(self, value: Any) -> Any:
        """Rank 0's `value` (any picklable object) on every rank: what rank 0 alone decided, such as whether it could
        hold the run directory. `value` itself in one process."""
        if not self.distributed:
            return value
        data = pickle.dumps(value) if self.ranks.is_main else b""
        size = int(broadcast_from_main(torch.tensor([len(data)], dtype=torch.int64)).item())
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(size, dtype=torch.uint8)
        return pickle.loads(broadcast_from_main(buffer).numpy().tobytes())

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (downloads, cache writes), the others after it, from its cache."""
        if self.distributed and not self.ranks.is_main:
            dist.barrier()
        yield
        if self.distributed and self.ranks.is_main:
            dist.barrier()

    @contextlib.contextmanager
    def session(self, advice: str) -> Iterator[None]:
        """Around a job's work: a lost peer or torchrun's stop becomes a one-line error ending in `advice`
        (how to go on)."""
        if not self.distributed:
            yield
            return

        def stopped_by_torchrun(signum, frame):
            raise RankError(f"stopped by torchrun because another process of the job failed; {advice}")

        previous = signal.signal(signal.SIGTERM, stopped_by_torchrun)
        try:
            yield
        except (dist.DistError, RuntimeError) as exc:
            if not isinstance(exc, dist.DistError) and not any(m in str(exc) for m in _COMMUNICATION_FAILURES):
                raise
            # Our message is on its way out: torchrun's SIGTERM to the survivors must not cut it short.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            cause = re.sub(r"^\[[^\]]*\]\s*", "", first_line(exc)).split(". ")[0]  # no source path
            raise RankError(f"rank {self.ranks.rank} lost contact with the other processes (one was killed or "
                            f"failed: {cause}); {advice}") from None
        else:
            signal.signal(signal.SIGTERM, previous)


def _join_group(backend: str, device_id: torch.device | None) -> None:
    """init_process_group from torchrun's environment, reading only this attempt's keys in torchrun's store.

    The store outlives a restart (`--max-restarts`: torchrun shares one TCPStore across its attempts), and the
    process group's keys carry no attempt: a restarted process could read the address a dead process of the last
    attempt left there, and fail to connect to it (gloo: "Connection refused") or wait for it. A prefix with
    torchrun's restart count keeps each attempt's keys apart."""
    store, rank, world_size = next(dist.rendezvous("env://"))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(backend, store=dist.PrefixStore(f"rdist/attempt-{attempt}", store), rank=rank,
                            world_size=world_size, device_id=device_id)


def _close_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _rank_device(ranks: Ranks, name: str | None) -> torch.device:
    """Under torchrun: the GPU of LOCAL_RANK (one per process), or the CPU."""
    if name is not None and name != "cuda":
        device = default_device(name)
        if device.type == "cuda":
            raise RdistError(f"--device {name} names one GPU, but under torchrun each process takes the GPU of "
                             "its LOCAL_RANK: pass --device cuda (and CUDA_VISIBLE_DEVICES to choose the GPUs)")
        return device
    if name is None and not torch.cuda.is_available():
        return torch.device("cpu")
    default_device("cuda")  # refuses when no GPU is visible
    count = torch.cuda.device_count()
    if ranks.local_rank >= count:
        raise RankError(f"rank {ranks.rank} (LOCAL_RANK={ranks.local_rank}) has no GPU: this node shows {count} "
                        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); start at most "
                        f"{count} processes per node (torchrun --nproc-per-node {count})")
    return torch.device("cuda", ranks.local_rank)


# -- collectives: each one the identity in one process ---------------------------------------------------------


def distributed() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def comm_device() -> torch.device:
    """Where collectives' tensors live: the GPU for nccl, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _run(collective: Callable[[], Any], *tensors: torch.Tensor) -> None:
    """Run a blocking collective on `tensors`, then wait until the backend holds none of them any more.

    gloo's worker thread drops its references to a finished operation's tensors after it has woken the caller;
    when Python has dropped its own first, the worker frees them, and a tensor Python owns needs the GIL to be
    freed. At the end of a process that is fatal (see the module docstring), so the caller keeps its tensors
    until the worker is done with them. NCCL releases its tensors from its watchdog thread, in its own time:
    waiting for that would stall every step, so NCCL is not waited for (a path not yet run on GPUs).
    """
    held = [t._use_count() for t in tensors]
    collective()
    if dist.get_backend() != "gloo":
        return
    # The worker needs microseconds; the bound only keeps a backend that held on to a tensor from hanging us.
    deadline = time.monotonic() + _RELEASE_SECONDS
    while any(t._use_count() > count for t, count in zip(tensors, held)) and time.monotonic() < deadline:
        time.sleep(0)  # gives the worker the CPU, and the GIL


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The sum over the ranks of each rank's `x` (every rank gets it), differentiable: the gradient of a rank's
    input is the sum over the ranks of the upstream gradients, since every rank's result depends on every rank's
    input. For statistics of the global batch (SyncBatchNorm; a method's batch-wide normalisation)."""
    return _SumOverRanks.apply(x) if distributed() else x


class _SumOverRanks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        total = x.clone()
        _run(lambda: dist.all_reduce(total), total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        _run(lambda: dist.all_reduce(total), total)
        return total


def mean_over_ranks(values: list[float]) -> list[float]:
    """`values` (as many on every rank) averaged over the ranks, as numbers on the host."""
    if not distributed():
        return values
    return [v / dist.get_world_size() for v in total_over_ranks(values)]


def total_over_ranks(values: list[float]) -> list[float]:
    """`values` (as many on every rank) summed over the ranks, as numbers on the host (counts stay exact up to
    2**53)."""
    if not distributed() or not values:
        return values
    total = torch.tensor(values, dtype=torch.float64, device=comm_device())
    _run(lambda: dist.all_reduce(total), total)
    return total.tolist()


def min_over_ranks(value: int) -> int:
    """The smallest of every rank's `value`."""
    if not distributed():
        return value
    smallest = torch.tensor([value], dtype=torch.int64, device=comm_device())
    _run(lambda: dist.all_reduce(smallest, op=dist.ReduceOp.MIN), smallest)
    return int(smallest.item())


def broadcast_from_main(x: torch.Tensor) -> torch.Tensor:
    """Rank 0's `x` on every rank, written into `x` (on the device collectives use) and returned."""
    if not distributed():
        return x
    flat = x.to(comm_device())
    _run(lambda: dist.broadcast(flat, 0), flat)
    return x.copy_(flat) if flat is not x else x


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every rank's `x` (any number of rows, the same trailing shape and dtype everywhere) concatenated along the
    first dimension in rank order, on every rank, on `x`'s device."""
    if not distributed():
        return x
    device = comm_device()
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(dist.get_world_size())]
    mine = torch.tensor([len(x)], dtype=torch.int64, device=device)
    _run(lambda: dist.all_gather(sizes, mine), mine, *sizes)
    lengths = [int(s.item()) for s in sizes]
    # all_gather takes tensors of one shape: each rank's rows padded to the longest.
    padded = torch.zeros((max(lengths), *x.shape[1:]), dtype=x.dtype, device=device)
    padded[:len(x)] = x
    gathered = [torch.empty_like(padded) for _ in lengths]
    _run(lambda: dist.all_gather(gathered, padded), padded, *gathered)
    return torch.cat([g[:n] for g, n in zip(gathered, lengths)]).to(x.device)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable `obj`, in rank order, on every rank (torch's all_gather_object, through
    `gather_rows`, so that its tensors are released as every collective's are)."""
    if not distributed():
        return [obj]
    data = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8)
    lengths = gather_rows(torch.tensor([len(data)], dtype=torch.int64))
    everyone = gather_rows(data)
    starts = [0, *torch.cumsum(lengths, 0).tolist()]
    return [pickle.loads(everyone[a:b].numpy().tobytes()) for a, b in zip(starts, starts[1:])]
