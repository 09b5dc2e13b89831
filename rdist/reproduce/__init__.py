"""Reproductions: paper table rows (reproductions.yaml) trained, measured over seeds and set beside the paper.

    from rdist.reproduce import REPRODUCTIONS, reproduce
    result = reproduce(REPRODUCTIONS.find("digits-rslad"), seeds=[0, 1])
    result.summary()["aa"]  # published, mean, std, each seed, gap in points
"""

from rdist.reproduce.catalogue import REPRODUCTIONS, Reproduction, TeacherStage, check_entry
from rdist.reproduce.runner import ReproductionResult, reproduce

__all__ = ["REPRODUCTIONS", "Reproduction", "ReproductionResult", "TeacherStage", "check_entry", "reproduce"]
