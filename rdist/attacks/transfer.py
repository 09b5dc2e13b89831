"""Transfer attacks: examples crafted with any white-box attack on a surrogate, scored on the target."""

from __future__ import annotations

from rdist.attacks.base import Attack


class Transfer(Attack):
    """A transfer attack: adversarial examples crafted with a white-box attack on a surrogate model and scored on
    the attacked one, which gives no gradient of its own; the transferability studied in "Transferability in
    Machine Learning: from Phenomena to Black-Box Attacks using Adversarial Samples" (Papernot et al., 2016)
    [https://arxiv.org/abs/1605.07277]. The black-box check that a model's robustness is not gradient masking,
    and the way an ONNX Runtime model meets a gradient attack.

    Official code: none (a protocol around any white-box attack, not an attack of its own).

    Distance: that of `source` (its `norm`).

    Arguments:
        model (nn.Module): the model the examples are scored on (any model: ONNX Runtime's too).
        eps (float): the budget the examples are checked against, that of `source`, in its norm.
        source (Attack): the white-box attack, built on the surrogate model.
        name (str): the attack's name in reports and errors. (default: "transfer")

    The protocol: `transfer-pgd20` and `transfer-cw` are pgd20 and cw crafted on `--surrogate` (an ONNX file's
    default: the artifact it was exported from), with the seeds the white-box attacks use.

    Shape:
        x: (N, C, H, W) floats in [0, 1]; y: (N,) class indices; returns x_adv of x's shape, checked.

    Example:
        >>> attack = Transfer(model, 8 / 255, PGD(surrogate.eval(), 8 / 255))
        >>> x_adv = attack(x, y)
    """

    def __init__(self, model, eps: float, source: Attack, name: str = "transfer"):
        super().__init__(model, eps, norm=source.norm)
        self.source, self.name = source, name

    def perturb(self, x, y):
        return self.source(x, y)

    def reseed(self, seed: int) -> None:
        self.source.reseed(seed)
