import pytest
import torch
from torch import nn

from rdist.methods.base import Step, Recipe
from rdist.methods.mart import MART


def reference_loss(reference, model, batch, xa, beta):
    """The spec's MART loss and the error float32 may honestly leave in it; y' picked the official way: of the two
    most likely classes, the one that is not y."""
    y, rows = batch.y, torch.arange(len(batch.y))
    clean, adversarial = model(batch.x.double()), model(xa.double())
    adv_probs = reference.softmax(adversarial)
    top_two = adv_probs.argsort(dim=1)[:, -2:]
    wrong = torch.where(top_two[:, -1] == y, top_two[:, -2], top_two[:, -1])
    boosted_ce = reference.ce(adversarial, y) - torch.log(1.0001 - adv_probs[rows, wrong]).mean()
    clean_true_prob = reference.softmax(clean)[rows, y]
    loss = boosted_ce + beta * (reference.kl(clean, adversarial) * (1 - clean_true_prob)).mean()
    # log(1.0001 - p) turns p's rounding (about eps) into an error of eps / (1.0001 - p)
    log_error = reference.rounding((1 / (1.0001 - adv_probs[rows, wrong])).max().item())
    error = reference.float32_error(1.0, adversarial) + log_error + reference.float32_error(beta, clean, adversarial)
    return loss, error


@pytest.mark.parametrize("beta", [6.0, 5.0])  # 6 for WRN, 5 for ResNet-18
def test_loss_matches_the_spec_value_and_gradient(student, make_batch, reference, close, close_gradients,
                                                  float64_logits, beta):
    batch = make_batch()
    xa = (batch.x + 0.03).clamp(0, 1)
    expected_model = float64_logits(student)
    expected, error = reference_loss(reference, expected_model, batch, xa, beta)
    loss = MART(beta=beta).loss(student, batch, xa)
    close(loss, expected, error)
    # Gradients through S(x) in the KL target and in the weight 1 - p_y, as the official code.
    loss.backward()
    expected.backward()
    close_gradients(student, expected_model)


class FixedLogits(nn.Module):
    """Returns the same logits whatever the input, so the loss sees exactly these numbers."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


def test_wrong_class_term_uses_the_most_likely_wrong_class(reference, close):
    # Class 0 is right in both rows; the most likely wrong class is 1 in row 0 and 2 in row 1.
    logits = torch.tensor([[0.0, 3.0, 1.0], [4.0, -1.0, 2.0]])
    x, y = torch.zeros(2, 1), torch.zeros(2, dtype=torch.long)
    batch = Step(x=x, y=y, epoch=1, epochs=1)
    probs = reference.softmax(logits)
    wrong = torch.stack([probs[0, 1], probs[1, 2]])
    expected = reference.ce(logits, y) - torch.log(1.0001 - wrong).mean()
    error = 2 * reference.float32_error(1.0, logits) + reference.rounding(1 / (1.0001 - wrong).min().item())
    close(MART().loss(FixedLogits(logits), batch, x), expected, error)  # xa == x: the KL term is 0


@pytest.mark.parametrize("arch", ["wrn-34-10", "dm-wrn-28-10"])
def test_paper_preset_for_wide_resnets(arch):
    # The official scripts attack with eps 0.031 and step 0.007 (10 steps).
    assert MART.paper_preset("cifar10", arch) == (Recipe(epochs=100, milestones=(75, 90), weight_decay=7e-4, eps=0.031,
                                                         step_size=0.007), {"beta": 6.0})


@pytest.mark.parametrize("arch", ["resnet18", "mobilenetv2"])
def test_paper_preset_for_other_architectures_is_the_resnet18_one(arch):
    assert MART.paper_preset("cifar100", arch) == (MART.recipe, {"beta": 5.0})
