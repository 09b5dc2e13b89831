"""The inputs a student's batch norm sees in train mode during one training step, per method.

BN running statistics are an exponential average of every train-mode batch, so which batches a step shows
them (clean, adversarial, attack iterates), and in which order, is part of a method. Each sequence below is
the official training loop's; the +igdm compositions follow rdist's documented order (docs/methods.md)."""

import pytest
import torch
from torch import nn

from rdist.methods.registry import create_method

STEPS = 3
ATTACK = ["attack"] * STEPS  # train-mode forwards on the inner attack's iterates

OFFICIAL = {
    "natural": ["x"],
    "kd": ["x"],
    "sat": ["xa"],
    "trades": ["x", "xa", "x"],  # trades_loss: S(x) for the CE, S(xa), then S(x) again for the KL target
    "mart": ["x", "xa"],
    "ard": [*ATTACK, "xa", "x"],
    "akd2": [*ATTACK, "xa"],
    "rslad": ["xa", "x"],
    "adaad": ["x", "xa"],  # S(x) even at alpha 1, where its term has weight 0
    "dgad": ["x", "xa"],  # main.py --method DGAD: ori_outputs, adv_outputs
    "saad": ["xa", "x-d", "x"],  # saad.py: student_plus, student_minus, student_clean (even at clean weight 0)
    "bmtard": ["xa", "x"],  # resnet18_mtard_cifar10.py: S(xa) in mtard_inner_loss_ce, then S(x)
    "mtard": ["xa", "x"],
    "peeraid": ["xa", "xa", "x"],  # main.py train_kd: S(xa) as the peer's target, student_outputs, logit_nat
    ("iad-i", "warm-up"): [*ATTACK, "xa", "xa", "x"],
    ("iad-i", "after"): [*ATTACK, "xa", "xa", "x", "x"],
    ("iad-ii", "warm-up"): [*ATTACK, "xa"],
    ("iad-ii", "after"): [*ATTACK, "xa", "x"],
    # IGDM's probes x + b d and x - g d first, then the base's own forwards.
    "ard+igdm": [*ATTACK, "x+bd", "x-gd", "xa", "x"],
    "rslad+igdm": ["x+bd", "x-gd", "xa", "x"],
    "adaad+igdm": ["x+bd", "x-gd", "x", "xa"],
}


class Recording(nn.Module):
    """Wraps the student and keeps every input it is shown in train mode."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x.detach().clone())
        return self.model(x)


def train_mode_inputs(name: str, student, batch, **hparams) -> list[str]:
    """One engine step of method `name` (attack in the method's BN mode, loss in train mode), its train-mode
    student inputs named: x, xa, the IGDM probes, or an attack iterate."""
    method = create_method(name, attack_steps=STEPS, igdm_beta=0.5, igdm_gamma=2.0, **hparams) \
        if name.endswith("+igdm") else create_method(name, attack_steps=STEPS)
    method.reset_state(5)  # the stateful methods' (B-MTARD) state as a run starts it
    recording = Recording(student)
    recording.train(method.bn_mode == "train")
    xa = method.perturb(recording, batch)
    recording.train()
    method.loss(recording, batch, xa if xa is not None else batch.x)
    named = {"x": batch.x}
    if xa is not None:
        named |= {"xa": xa, "x+bd": batch.x + 0.5 * (xa - batch.x), "x-gd": batch.x - 2.0 * (xa - batch.x),
                  "x-d": batch.x - (xa - batch.x)}
    return [next((k for k, v in named.items() if torch.equal(seen, v)), "attack") for seen in recording.seen]


@pytest.mark.parametrize("key", sorted(OFFICIAL, key=str), ids=lambda k: "-".join(k) if isinstance(k, tuple) else k)
def test_train_mode_inputs_follow_the_official_loop(bn_student, make_batch, key):
    name, phase = key if isinstance(key, tuple) else (key, "warm-up")
    epoch = 1 if phase == "warm-up" else 100
    assert train_mode_inputs(name, bn_student, make_batch(epoch=epoch, epochs=200)) == OFFICIAL[key]


def test_the_igdm_codes_ard_shows_bn_its_forwards_in_its_order(bn_student, make_batch):
    # ard_IGDM_cifar100.py (`--recipe paper` of ard+igdm): PGD in eval mode, then S(x + b d), S(x), S(x - g d).
    assert train_mode_inputs("ard+igdm", bn_student, make_batch(epoch=1, epochs=200), igdm_code_ard=True, tau=1.0,
                             kl_scale=1.0) == ["x+bd", "x", "x-gd"]
