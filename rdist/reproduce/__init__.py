"""Reproductions: paper table rows (reproductions.yaml) trained, measured over seeds and set beside the paper.

    from rdist.reproduce import find_reproduction, load_reproductions, reproduce
    result = reproduce(find_reproduction(load_reproductions(), "digits-rslad"), seeds=[0, 1])
    result.summary()["aa"]  # published, mean, std, each seed, gap in points
"""

from rdist.reproduce.catalogue import (Reproduction, TeacherStage, check_entry, find_reproduction, load_reproductions,
                                       reproductions_path)
from rdist.reproduce.runner import ReproductionResult, reproduce

__all__ = ["Reproduction", "ReproductionResult", "TeacherStage", "check_entry", "find_reproduction",
           "load_reproductions", "reproduce", "reproductions_path"]
