"""`step.batch` (`rdist.parallel.GlobalBatch`): a method's statistics over the global batch, and the rule that makes a
loss built from them give, on N processes, the gradient one process gives.

Under `torchrun --nproc-per-node 2` (gloo) a batch of 7 rows splits 3/4. Each rank weights its loss by its share of
the batch and DDP averages the gradients, as the engine does (`DataParallelTraining.shard`, `update_phase`). For each
form of loss the rule allows (the mean over the rank's rows of per-example terms that use global statistics, a value
the same on every rank built from the collectives, a product of global means, a loss of the gathered rows), the
averaged gradient equals the one-process gradient in float64; the form the rule forbids (a sum over the rank's rows
divided by the global size) does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rdist.data import Batches
from rdist.parallel import GlobalBatch

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")
ROWS, FEATURES, CLASSES = 7, 5, 3


def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(ROWS, FEATURES, generator=generator, dtype=torch.float64), torch.arange(ROWS) % CLASSES


def model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Linear(FEATURES, CLASSES).double()


def losses(logits: torch.Tensor, y: torch.Tensor, batch: GlobalBatch) -> dict[str, torch.Tensor]:
    """The forms of loss, each from this process's logits and rows."""
    per = F.cross_entropy(logits, y, reduction="none")
    low, high = batch.min(per), batch.max(per)  # with their gradients (the extreme rows')
    p = logits.softmax(1)
    return {
        "local mean, global min/max": ((per - low) / (high - low) * per).mean(),
        "global mean and sum": batch.mean(per) + batch.sum(per.square()) / batch.size,
        "product of global means": batch.mean(per) * batch.mean(p[:, 0]),
        "loss of the gathered rows": F.cross_entropy(batch.gather(logits), batch.gather(y)),
        "mixed": per.mean() + batch.mean(p.square().sum(1)) * batch.sum(y == 0) / batch.size,
        "forbidden: local sum over the global size": per.sum() / batch.size,
    }


# Each rank: its rows, its share of the gradient and its GlobalBatch from the engine's own shard; one DDP backward
# per form; rank 0 writes the averaged gradients and every rank its forward values of the collectives.
RANK_SCRIPT = """
import json, sys
import torch
torch.set_num_threads(1)
from rdist.data import Batches
from rdist.engine.ddp import DataParallelTraining
from rdist.parallel import broadcast_tensors
from tests.engine.test_global_batch import data, losses, model

out = sys.argv[1]
parallel = DataParallelTraining.start("cpu")
rank = parallel.group.ranks.rank
x, y = data()
batches = Batches(x, y, len(y), rank=rank, world_size=2)
_, grad_scale, batch = parallel.shard(torch.Generator(), batches, 0)
rows = batches.rows(0)
net = model()
wrapped = parallel.wrap(net)
gradients = {}
for name in losses(net(x[rows]), y[rows], batch):
    net.zero_grad()
    (losses(wrapped(x[rows]), y[rows], batch)[name] * grad_scale).backward()
    gradients[name] = [p.grad.tolist() for p in net.parameters()]
values = x[rows, 0]
state = [torch.full((2,), float(rank)), torch.tensor(rank == 1)]
broadcast_tensors(state)
seen = {"gather": batch.gather(values).tolist(), "sum": batch.sum(values).item(), "mean": batch.mean(values).item(),
        "max": batch.max(values).item(), "min": batch.min(values).item(), "count": batch.sum(values > 0).item(),
        "size": batch.size, "state": [state[0].tolist(), state[1].item()], "grad_scale": grad_scale}
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump({"gradients": gradients, "seen": seen}, f)
"""


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("global-batch")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    script = out / "rank_script.py"
    script.write_text(RANK_SCRIPT)
    process = subprocess.run([str(TORCHRUN), "--standalone", "--nproc-per-node", "2", str(script), str(out)], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert process.returncode == 0, process.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def one_process_gradients() -> dict[str, list[torch.Tensor]]:
    x, y = data()
    net, gradients = model(), {}
    for name in losses(net(x), y, GlobalBatch(ROWS)):
        net.zero_grad()
        losses(net(x), y, GlobalBatch(ROWS))[name].backward()
        gradients[name] = [p.grad.clone() for p in net.parameters()]
    return gradients


def test_every_loss_the_rule_allows_gives_the_one_process_gradient(two_ranks):
    expected = one_process_gradients()
    for name, gradients in two_ranks[0]["gradients"].items():
        two = [torch.tensor(g, dtype=torch.float64) for g in gradients]
        # Both ranks hold DDP's average; it is the one-process gradient but for float64 rounding.
        assert all(torch.equal(a, torch.tensor(b, dtype=torch.float64))
                   for a, b in zip(two, two_ranks[1]["gradients"][name])), name
        close = all(torch.allclose(a, b, rtol=1e-12, atol=1e-14) for a, b in zip(two, expected[name]))
        assert close != name.startswith("forbidden"), name


def test_the_collectives_see_the_global_batch_on_every_rank(two_ranks):
    x, _ = data()
    values = x[:, 0]
    for rank in two_ranks:
        seen = rank["seen"]
        assert seen["gather"] == values.tolist()  # exact: the rows in the one-process order
        assert seen["sum"] == pytest.approx(values.sum().item(), rel=1e-14)
        assert seen["mean"] == pytest.approx(values.mean().item(), rel=1e-14)
        assert (seen["max"], seen["min"], seen["size"]) == (values.max().item(), values.min().item(), ROWS)
        assert seen["count"] == (values > 0).sum().item()
        assert seen["state"] == [[0.0, 0.0], False]  # rank 0's state, a float and a flag, broadcast to every rank
    assert [r["seen"]["grad_scale"] for r in two_ranks] == [3 * 2 / 7, 4 * 2 / 7]


def test_in_one_process_every_statistic_is_the_plain_tensor_operation():
    x, y = data()
    values = x[:, 0].clone().requires_grad_()
    batch = GlobalBatch(ROWS)
    assert batch.whole and batch.gather(values) is values and batch.size == ROWS
    assert torch.equal(batch.sum(values), values.sum(0)) and torch.equal(batch.mean(values), values.sum(0) / ROWS)
    assert torch.equal(batch.max(values), values.max()) and torch.equal(batch.min(values), values.min())
    assert batch.sum(y == 0).dtype == torch.int64 and batch.sum(y == 0) == (y == 0).sum()
    batch.max(values).backward()
    assert values.grad.sum() == 1 and values.grad[values.argmax()] == 1  # a gradient, to the largest row
    assert GlobalBatch(7, 3, 7).whole is False and Batches(x, y, 7).rows(0) == slice(0, 7)
