"""Attacks: one small class each with one call signature, suites, and the batched evaluator."""

from rdist.attacks.autoattack import AutoAttack, Square
from rdist.attacks.base import Attack, check_adversarial
from rdist.attacks.cw import CW, margin_loss
from rdist.attacks.evaluator import EvalResult, evaluate
from rdist.attacks.pgd import FGSM, PGD, pgd
from rdist.attacks.registry import ATTACK_HELP, SUITES, attack_names, create_attack, resolve_attacks
from rdist.attacks.transfer import Transfer

__all__ = ["ATTACK_HELP", "Attack", "AutoAttack", "CW", "EvalResult", "FGSM", "PGD", "SUITES", "Square",
           "Transfer", "attack_names", "check_adversarial", "create_attack", "evaluate", "margin_loss", "pgd",
           "resolve_attacks"]
