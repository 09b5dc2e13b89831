"""Evaluation throughput (images/s) of PGD-20 and AutoAttack through rdist, against the plain way, and what bf16 costs.

    python bench/attack_throughput.py [--model PATH | --arch resnet18] [--data npz:PATH] [--n 1000]
        [--attacks pgd20,aa] [--aa standard] [--precisions fp32,bf16] [--batch-size 256|auto] [--device cuda]
        [--json FILE]

For each attack, on the same model and images:
  rdist fp32   `rdist.attacks.evaluator` (the honest protocol: one attack object per evaluation, inputs in the
               model's layout: channels_last, as `rdist attack` loads it)
  rdist bf16   the same under bf16 autocast (`rdist attack --precision bf16`)
  direct       the plain way: pgd20 as a textbook PGD loop, AutoAttack as `pyautoattack.AutoAttack(...)
               .run_standard_evaluation` called directly, fp32, on an NCHW copy of the model
Prints robust accuracy and images/s of each, rdist fp32 / direct as a ratio, and bf16's accuracy change.

Defaults by device. CUDA: 1,000 images, AutoAttack standard, fp32 and bf16. CPU: 16 images, AutoAttack's APGD-CE
alone (on a naturally trained model it leaves nothing for the later attacks of the standard suite, which only
attack the points still robust), fp32 only: a CPU without bf16 instructions emulates bf16, several times slower
than fp32, so its time says nothing of a GPU's (`--precisions fp32,bf16` still runs it).

The model is by default the naturally trained CIFAR ResNet-18 that pyautoattack ships (examples/model_test.pt),
the images the shared CIFAR-10 subset when present; otherwise random weights (--arch) and random images.
Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import rdist
from rdist.attacks import evaluate
from rdist.attacks.evaluator import auto_batch_size
from rdist.device import channels_last, cudnn_autotune
from rdist.teachers.convert import import_checkpoint

EPS = 8 / 255
ROOT = Path(__file__).resolve().parents[1]
# The shared CIFAR-10 subset, beside the checkout (as the tests look for it) or inside it.
SUBSET = next((p for p in (ROOT.parent / "shared" / "data" / "cifar10-subset.npz",
                           ROOT / "shared" / "data" / "cifar10-subset.npz") if p.is_file()), ROOT / "no-subset")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def direct_pgd20(model, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Per-example correctness under 20 steps of 2/255 from a uniform start, written as tutorials write it."""
    correct = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        xa = (xb + torch.empty_like(xb).uniform_(-EPS, EPS)).clamp(0, 1)
        for _ in range(20):
            xa.requires_grad_(True)
            grad, = torch.autograd.grad(F.cross_entropy(model(xa), yb), [xa])
            xa = torch.min(torch.max(xa.detach() + 2 / 255 * grad.sign(), xb - EPS), xb + EPS).clamp(0, 1)
        with torch.no_grad():
            correct.append((model(xa).argmax(1) == yb) & (model(xb).argmax(1) == yb))
    return torch.cat(correct)


def direct_autoattack(model, x: torch.Tensor, y: torch.Tensor, batch_size: int, components: str) -> torch.Tensor:
    from pyautoattack import AutoAttack

    kwargs = {"version": "standard"} if components == "standard" else {"version": "custom",
                                                                      "attacks": components.split("+")}
    adversary = AutoAttack(model, norm="Linf", eps=EPS, seed=0, device=x.device, **kwargs)
    adversary.logger.disabled = True
    x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    with torch.no_grad():
        return torch.cat([model(x_adv[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                          for i in range(0, len(x), batch_size)])


def timed(device: torch.device, fn):
    synchronize(device)
    start = time.perf_counter()
    value = fn()
    synchronize(device)
    return value, time.perf_counter() - start


def load(args, device: torch.device):
    """(model, x, y, description): the model to attack and the first n test images."""
    examples = None
    try:
        import pyautoattack

        examples = Path(pyautoattack.__file__).parent / "examples" / "model_test.pt"
    except ImportError:
        pass
    if args.model:
        model, what = rdist.load_model(args.model, device), str(args.model)
    elif args.arch is None and examples is not None and examples.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            artifact = Path(tmp) / "natural-resnet18.safetensors"
            import_checkpoint(examples, arch="resnet18", dataset="cifar10", output=artifact)
            model = rdist.load_model(artifact, device)
        what = "pyautoattack's natural ResNet-18"
    else:
        torch.manual_seed(0)
        model, what = rdist.create_model(args.arch or "resnet18").to(device), f"{args.arch or 'resnet18'} (random)"
    data = args.data or (f"npz:{SUBSET}" if SUBSET.is_file() else None)
    if data:
        dataset = rdist.load_dataset(data)
        x, y = dataset.x_test[:args.n].float() / 255, dataset.y_test[:args.n]
    else:
        torch.manual_seed(1)
        x, y = torch.rand(args.n, 3, 32, 32), torch.randint(0, 10, (args.n,))
        data = "random images"
    return model.eval(), x.to(device), y.to(device), f"{what} on {len(y)} images of {data}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an rdist artifact to attack")
    parser.add_argument("--arch", help="attack this architecture with random weights instead")
    parser.add_argument("--data", help="npz:PATH or a dataset name [default: the shared CIFAR-10 subset]")
    parser.add_argument("--n", type=int, help="images [default: 1000 on CUDA, 16 on the CPU]")
    parser.add_argument("--attacks", default="pgd20,aa")
    parser.add_argument("--aa", help="AutoAttack's components: standard, or e.g. apgd-ce+apgd-t (aa then runs as "
                        "rdist's aa:COMPONENTS and pyautoattack's custom version) [default: standard on CUDA, "
                        "apgd-ce on the CPU]")
    parser.add_argument("--precisions", help="rdist's precisions to time [default: fp32,bf16 on CUDA, fp32 on the CPU]")
    parser.add_argument("--batch-size", default="256", help="images per batch, or auto")
    parser.add_argument("--rounds", type=int, default=1, help="time every contender this many times, alternating "
                        "which goes first, and keep each one's fastest (so that another job's load hits all alike)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    for option, on_cuda, on_cpu in (("n", 1000, 16), ("aa", "standard", "apgd-ce"),
                                    ("precisions", "fp32,bf16", "fp32")):
        if getattr(args, option) is None:
            setattr(args, option, on_cuda if device.type == "cuda" else on_cpu)
    precisions = args.precisions.split(",")
    if "fp32" not in precisions or not set(precisions) <= {"fp32", "bf16"}:
        parser.error("--precisions: fp32 (the reference of every ratio), optionally with bf16")
    model, x, y, what = load(args, device)
    plain = copy.deepcopy(model)  # NCHW fp32: the direct contender's own copy
    model = channels_last(model)  # as `rdist attack` loads a model
    batch = auto_batch_size(model, x, y) if args.batch_size == "auto" else int(args.batch_size)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{what}, eps 8/255, batch {batch}, {name}, torch {torch.__version__}")
    figures = {"device": name, "torch": torch.__version__, "model": what, "n": len(y), "batch": batch,
               "autoattack": args.aa, "precisions": precisions}
    direct = {"pgd20": direct_pgd20, "aa": lambda *a: direct_autoattack(*a, components=args.aa)}
    rdist_name = {"pgd20": "pgd20", "aa": "aa" if args.aa == "standard" else f"aa:{args.aa}"}
    with cudnn_autotune(device):
        # Warm-up, untimed: allocator, cuDNN autotuning, lazy initialisation of each path.
        warm = slice(0, min(len(y), 8))
        for precision in precisions:
            evaluate(model, x[warm], y[warm], ["pgd20"], eps=EPS, batch_size=batch, precision=precision)
        direct_pgd20(plain, x[warm], y[warm], batch)
        for attack in args.attacks.split(","):
            def run_rdist(precision: str) -> float:
                result = evaluate(model, x, y, ["clean", rdist_name[attack]], eps=EPS, batch_size=batch,
                                  precision=precision)
                return result.accuracy[rdist_name[attack]]

            contenders = {**{f"rdist_{p}": (lambda p=p: run_rdist(p)) for p in precisions},
                          "direct": lambda: direct[attack](plain, x, y, batch).float().mean().item()}
            rows: dict[str, tuple[float, float]] = {}
            for round_ in range(args.rounds):
                order = list(contenders) if round_ % 2 == 0 else list(reversed(contenders))
                for key in order:
                    accuracy, seconds = timed(device, contenders[key])
                    rows[key] = (accuracy, min(seconds, rows[key][1]) if key in rows else seconds)
            figures[attack] = {key: {"accuracy": round(acc, 4), "seconds": round(s, 2),
                                     "images_per_s": round(len(y) / s, 1)} for key, (acc, s) in rows.items()}
            figures[attack]["ratio_rdist_fp32_to_direct"] = round(rows["direct"][1] / rows["rdist_fp32"][1], 3)
            if "rdist_bf16" in rows:
                figures[attack]["bf16_speedup"] = round(rows["rdist_fp32"][1] / rows["rdist_bf16"][1], 3)
                figures[attack]["bf16_accuracy_change"] = round(rows["rdist_bf16"][0] - rows["rdist_fp32"][0], 4)
            for key, (acc, s) in rows.items():
                print(f"{attack:>6} {key:>11}: accuracy {acc:7.2%}  {len(y) / s:9.1f} images/s  ({s:.1f} s)")
            f = figures[attack]
            bf16 = (f"; bf16 {f['bf16_speedup']:.2f}x faster than fp32, accuracy "
                    f"{100 * f['bf16_accuracy_change']:+.2f} "
                    "points") if "bf16_speedup" in f else ""
            print(f"{attack:>6}: rdist fp32 / direct {f['ratio_rdist_fp32_to_direct']:.2f}x{bf16}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
