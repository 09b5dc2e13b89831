"""Teachers: converting foreign checkpoints, and resolving `--teacher` (a file, `zoo:NAME`, or a RobustBench name)."""

from rdist.teachers.convert import import_checkpoint, read_state_dict
from rdist.teachers.resolve import resolve_teacher

__all__ = ["import_checkpoint", "read_state_dict", "resolve_teacher"]
