"""Attack-failure flags: the signs that a robustness number may be gradient masking or a weak attack rather than
robustness, each a named `Flag` with the numbers behind it, in every report.

The checks follow "Indicators of Attack Failure" (Pintor et al., NeurIPS 2022) [https://arxiv.org/abs/2106.09947]
and AutoAttack's own checks (`flags_doc.md` of https://github.com/fra31/auto-attack, whose warnings pyautoattack
logs and `rdist.attacks.autoattack` keeps). They are cheap: the gradient and loss checks read what the PGD core
computes anyway (`Trace`, an observer of `rdist.attacks.pgd.pgd`), the others cost one more clean forward per image
and a short attack on at most UNBOUNDED_IMAGES images.

Each check reads the per-example columns the evaluator gathers (one images x columns table, whatever the number of
processes), so the flags of a sharded evaluation are those of one process.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from rdist.attacks.base import NORM_TEXT

# Unbounded attack: PGD on the cross-entropy from the input itself (no random start: a random image may be
# misclassified without any gradient's help), at an eps that covers the whole [0, 1] box, on at most this many
# correctly classified images spread over the evaluation set.
UNBOUNDED_IMAGES = 64
UNBOUNDED_STEPS = 20
# A black-box attack beats the white-box ones when its accuracy is lower by more than this (pyautoattack's
# check_square_sr threshold, 0.2%).
BLACK_BOX_MARGIN = 0.002
# Incomplete optimisation: more than this share of the loss the attack gained on the images it failed on came in its
# last quarter of steps (a converged attack gains nothing there; a linear climb gains a quarter).
LATE_GAIN_SHARE = 0.10
MIN_TRACED_STEPS = 4  # fewer steps have no "last quarter" to speak of

# name -> (what it means, what to do), for the README and `rdist attack --list`.
FLAG_HELP: dict[str, tuple[str, str]] = {
    "zero-gradient": (
        "the attack's loss had an exactly zero input gradient at its start on some images: a gradient attack "
        "cannot move them (saturated softmax, quantised or non-differentiable inputs)",
        "trust the black-box and margin-loss attacks (square, aa, cw) or a transfer attack instead; look for "
        "logits scaled up or a softmax inside the model"),
    "non-finite-gradient": (
        "the input gradient was NaN or infinite at the attack's start on some images (those images were not "
        "attacked)",
        "find the operation that overflows (a log of 0, huge logits); evaluate in fp32"),
    "incomplete-optimisation": (
        "the attack's loss was still rising over its last quarter of steps on the images it failed on: more "
        "steps would likely break more of them",
        "run a stronger attack (aa, or more steps) before trusting the number"),
    "unbounded-attack-fails": (
        "PGD with a budget covering the whole image (eps 1 in L-inf) left some images correctly classified: "
        "with that budget any image can be changed into any other, so the gradients are not guiding the attack",
        "the gradient attacks' numbers are not robustness: use square, a transfer attack, or an adaptive attack"),
    "black-box-beats-white-box": (
        "a black-box attack (square, or examples transferred from another model) got a lower accuracy than every "
        "white-box attack, which sees the model's gradients and should do better",
        "the white-box numbers overstate robustness: report the black-box one, and find what blocks the "
        "gradients"),
    "randomness": (
        "the same clean inputs got different predictions in two evaluations: the model is random at test time",
        "evaluate with expectation over transformation (--attacks aa-rand) and several seeds"),
    "autoattack-randomized": (
        "AutoAttack's check: logits or accuracy change between runs on the same batch (a randomised defence)",
        "use --attacks aa-rand"),
    "autoattack-softmax-output": (
        "AutoAttack's check: the model outputs probabilities, not logits",
        "remove the final softmax: rdist models return logits"),
    "autoattack-zero-gradient": (
        "AutoAttack's check: APGD's DLR loss had zero gradients at its start on some images",
        "as zero-gradient: trust square and transfer attacks, look for what saturates"),
    "autoattack-square-improves": (
        "AutoAttack's check: Square, a black-box attack, lowered the accuracy the white-box components left",
        "as black-box-beats-white-box"),
    "autoattack-dynamic": (
        "AutoAttack's check: the model computes gradients during its forward pass (a dynamic defence)",
        "design an adaptive attack; AutoAttack may be insufficient"),
    "autoattack-classes": (
        "AutoAttack's check: too few classes for its DLR loss or its target classes",
        "use aa:apgd-ce on models with 3 classes or fewer"),
    "autoattack-warning": (
        "another message pyautoattack logged during the attack",
        "read it; flags_doc.md of AutoAttack explains its checks"),
}

# pyautoattack's messages (checks.py) -> flag names; anything else it logs is an `autoattack-warning`.
_AUTOATTACK_MESSAGES = [
    (re.compile(r"randomized defense"), "autoattack-randomized"),
    (re.compile(r"probability distribution"), "autoattack-softmax-output"),
    (re.compile(r"there are (?P<images>\d+) points with zero gradient"), "autoattack-zero-gradient"),
    (re.compile(r"Square Attack has decreased the robust accuracy of (?P<decrease>[\d.]+)%"),
     "autoattack-square-improves"),
    (re.compile(r"dynamic defense"), "autoattack-dynamic"),
    (re.compile(r"classes"), "autoattack-classes"),
]


@dataclass(frozen=True)
class Flag:
    """One sign that a number may not be robustness: its `name` (a key of FLAG_HELP), the attack it concerns
    (None: the model), a one-line `message` and the `numbers` behind it."""

    name: str
    message: str
    attack: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Flag":
        return cls(name=values["name"], message=values["message"], attack=values.get("attack"),
                   numbers=dict(values.get("numbers") or {}))

    def line(self) -> str:
        """The flag as one line of text: `name (attack): message`."""
        return f"{self.name}{f' ({self.attack})' if self.attack else ''}: {self.message}"


def is_black_box(attack: str) -> bool:
    """Whether `attack` queries the model for outputs only: Square, AutoAttack's Square alone, transfer attacks."""
    return attack in ("square", "aa:square") or attack.startswith("transfer-")


def is_white_box(attack: str) -> bool:
    """Whether `attack` takes the attacked model's own gradients."""
    return attack not in ("clean", "corruptions") and not is_black_box(attack)


# The attacks that run on rdist's PGD core against the model itself, whose start and losses are observed, with
# their step counts (the protocol's: a test checks them against the attacks the registry builds).
TRACED_STEPS = {"fgsm": 1, "pgd20": 20, "pgd20-trades": 20, "cw": 30}


def traced(attack: str) -> bool:
    """Whether `attack` runs on rdist's PGD core against the model itself (its start and loss are observed)."""
    return attack in TRACED_STEPS


class Trace:
    """The observer a PGD-core attack reports to (`rdist.attacks.pgd.pgd(observe=)`), one batch at a time: which
    images had a zero or non-finite gradient at the start, and each image's loss at the first step, at the start
    of the last quarter of steps, and at the last step. A non-finite gradient is replaced by 0 so that the
    evaluation goes on (those images are flagged, not attacked)."""

    def __init__(self, steps: int):
        self.steps = steps
        self.mid = late_start(steps)
        self.columns: dict[str, list[torch.Tensor]] = {k: [] for k in COLUMNS}

    def __call__(self, step: int, losses: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        if step == 0:
            finite = torch.isfinite(grad).flatten(1).all(1)
            self.columns["grad_nonfinite"].append((~finite).float())
            self.columns["grad_zero"].append((finite & (grad.flatten(1) == 0).all(1)).float())
        for key, at in (("loss_first", 0), ("loss_mid", self.mid), ("loss_last", self.steps - 1)):
            if step == at:
                self.columns[key].append(losses.float() if losses.ndim else losses.float().expand(len(grad)))
        return torch.nan_to_num(grad, 0.0, 0.0, 0.0)

    def take(self) -> dict[str, torch.Tensor]:
        """This batch's columns (per image), and a fresh start for the next batch."""
        out = {k: v[-1] if v else torch.empty(0) for k, v in self.columns.items()}
        self.columns = {k: [] for k in COLUMNS}
        return out


COLUMNS = ("grad_zero", "grad_nonfinite", "loss_first", "loss_mid", "loss_last")


def late_start(steps: int) -> int:
    """The step whose loss starts the last quarter of an attack's `steps` steps (at least one step before the
    last)."""
    return max(0, steps - 1 - max(1, steps // 4))


def _share(count: float, n: int) -> float:
    return round(count / n, 6) if n else 0.0


def trace_flags(attack: str, table: dict[str, torch.Tensor], accuracy: dict[str, float]) -> list[Flag]:
    """The zero- and non-finite-gradient and incomplete-optimisation flags of a traced attack.

    A zero gradient counts on the correctly classified images only (an image misclassified by far has a flat margin
    loss, and needs no attack). Incomplete optimisation is read on the images the attack failed on, and raised
    only when no stronger attack of the same report settles them: another attack (not FGSM, not itself
    incomplete) with a lower accuracy already shows that the weak attack's number is not the model's robustness,
    and the worst case does not rest on it.
    """
    flags = []
    correct = table["clean"] > 0
    n, total = int(correct.sum().item()), len(table[attack])
    count = int((table[f"check:{attack}:grad_zero"] * correct).sum().item())
    if count:
        flags.append(Flag("zero-gradient", f"{count} of {n} correctly classified images ({100 * count / n:.1f}%) had a "
                          "zero input gradient at the attack's start", attack,
                          {"images": count, "correct": n, "share": _share(count, n)}))
    count = int(table[f"check:{attack}:grad_nonfinite"].sum().item())
    if count:
        flags.append(Flag("non-finite-gradient", f"{count} of {total} images ({100 * count / total:.1f}%) had a "
                          "non-finite input gradient at the attack's start; they were not attacked", attack,
                          {"images": count, "n": total, "share": _share(count, total)}))
    late = late_gain(attack, table)
    if late is not None and late[0] > LATE_GAIN_SHARE and not _settled(attack, table, accuracy):
        steps = TRACED_STEPS[attack]
        flags.append(Flag("incomplete-optimisation", f"{100 * late[0]:.0f}% of the loss gained on the {late[1]} "
                          f"images it failed on came in its last {steps - 1 - late_start(steps)} of {steps} steps, "
                          "and no stronger attack of this report got a lower accuracy", attack,
                          {"late_gain_share": round(late[0], 4), "images": late[1], "steps": steps}))
    return flags


def late_gain(attack: str, table: dict[str, torch.Tensor]) -> tuple[float, int] | None:
    """(the share of the loss gained on the images `attack` failed on that came in its last quarter of steps,
    how many images), or None when the attack is too short to tell or failed on none."""
    failed = table[attack] > 0  # still correct after the attack: what a stronger attack could still break
    if TRACED_STEPS[attack] < MIN_TRACED_STEPS or not failed.any():
        return None
    first, mid, last = (table[f"check:{attack}:loss_{k}"][failed].double() for k in ("first", "mid", "last"))
    total, late = (last - first).sum().item(), (last - mid).sum().item()
    return (late / total if total > 0 else 0.0), int(failed.sum().item())


def _settled(attack: str, table: dict[str, torch.Tensor], accuracy: dict[str, float]) -> bool:
    """Whether another attack of the report, itself no weaker by construction, got a lower accuracy."""
    for other, value in accuracy.items():
        if other in (attack, "clean", "fgsm", "corruptions") or value >= accuracy[attack] - BLACK_BOX_MARGIN:
            continue
        late = late_gain(other, table) if traced(other) else None
        if late is None or late[0] <= LATE_GAIN_SHARE:
            return True
    return False


def unbounded_flag(table: dict[str, torch.Tensor], norm: str) -> list[Flag]:
    """The unbounded attack's flag: images still correct under PGD with a budget that covers the box."""
    column = table.get("check:unbounded")
    if column is None:
        return []
    checked = int((column >= 0).sum().item())
    correct = int((column > 0).sum().item())
    if not correct:
        return []
    eps = "1" if norm == "Linf" else "the box's diameter"
    return [Flag("unbounded-attack-fails", f"{correct} of {checked} correctly classified images stayed correct "
                 f"under {UNBOUNDED_STEPS}-step PGD at {NORM_TEXT[norm]} eps {eps}", None,
                 {"images": checked, "still_correct": correct, "steps": UNBOUNDED_STEPS, "norm": norm})]


def black_box_flags(accuracy: dict[str, float], table: dict[str, torch.Tensor]) -> list[Flag]:
    """A black-box attack whose accuracy is below every white-box attack's (by more than BLACK_BOX_MARGIN)."""
    white = {a: v for a, v in accuracy.items() if is_white_box(a)}
    if not white:
        return []
    best_name = min(white, key=white.get)
    survived_white = torch.stack([table[a] > 0 for a in white]).all(0)
    flags = []
    for attack, value in accuracy.items():
        if is_black_box(attack) and value < white[best_name] - BLACK_BOX_MARGIN:
            only = int((survived_white & (table[attack] == 0) & (table["clean"] > 0)).sum().item())
            flags.append(Flag("black-box-beats-white-box", f"{100 * value:.2f}% accuracy, below {best_name}'s "
                              f"{100 * white[best_name]:.2f}%: it broke {only} images every white-box attack missed",
                              attack, {"accuracy": round(value, 6), "white_box": best_name,
                                       "white_box_accuracy": round(white[best_name], 6), "images_only_it_broke": only}))
    return flags


def randomness_flag(table: dict[str, torch.Tensor]) -> list[Flag]:
    changed = int(table["check:changed"].sum().item())
    n = len(table["check:changed"])
    if not changed:
        return []
    return [Flag("randomness", f"{changed} of {n} clean predictions changed between two evaluations of the same "
                 "images", None, {"changed": changed, "n": n})]


def autoattack_flags(attack: str, messages: list[str]) -> list[Flag]:
    """pyautoattack's logged messages as flags: one per kind, with how often it was logged (zero-gradient
    warnings, logged per batch, add up their image counts)."""
    kinds: dict[str, dict[str, Any]] = {}
    for message in messages:
        name, numbers = "autoattack-warning", {}
        for pattern, kind in _AUTOATTACK_MESSAGES:
            match = pattern.search(message)
            if match:
                name, numbers = kind, {k: float(v) if "." in v else int(v) for k, v in match.groupdict().items()}
                break
        entry = kinds.setdefault(name if name != "autoattack-warning" else f"{name}:{message}",
                                 {"name": name, "message": message, "times": 0, "images": 0})
        entry["times"] += 1
        entry["images"] += numbers.get("images", 0)
        if "decrease" in numbers:
            entry["decrease_percent"] = numbers["decrease"]
    flags = []
    for entry in kinds.values():
        extra = {k: entry[k] for k in ("decrease_percent",) if k in entry}
        numbers = {"times": entry["times"], **({"images": entry["images"]} if entry["images"] else {}), **extra}
        message = entry["message"] if entry["times"] == 1 else f"{entry['message']} (logged {entry['times']} times)"
        flags.append(Flag(entry["name"], f"pyautoattack: {message}", attack, numbers))
    return flags
