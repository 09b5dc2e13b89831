"""Teachers: converting foreign checkpoints, and pulling RobustBench teachers by name (`rdist.resolve` resolves
`--teacher`)."""

from rdist.teachers.convert import import_checkpoint, read_state_dict

__all__ = ["import_checkpoint", "read_state_dict"]
