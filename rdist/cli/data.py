"""`rdist data convert`: the one-time preparation of a generated-image set for `--extra-data`."""

from __future__ import annotations

from pathlib import Path

import typer

from rdist.cli.common import console, user_errors
from rdist.errors import RdistError

app = typer.Typer(help="Prepare data files: generated-image sets for --extra-data.", no_args_is_help=True)


@app.command("convert")
@user_errors
def convert(
    src: Path = typer.Argument(..., help="a compressed npz (numpy.savez_compressed)", show_default=False),
    dst: Path = typer.Argument(..., help="the uncompressed copy to write (.npz)", show_default=False),
) -> None:
    """Write an uncompressed copy of a compressed npz, which rdist can memory-map for --extra-data.

    Streams each array through a small buffer (a 61 GB file needs a few MB of memory); arrays of Python objects
    are refused, never unpickled; DST appears only when complete.

    Example: rdist data convert cifar10_packed.npz cifar10.npz
    """
    from rdist.data import convert_npz
    from rdist.files import check_output

    if not src.is_file():
        raise RdistError(f"no such file: {src}; give the compressed npz to convert")
    check_output(dst, "DST", inputs=[("the input", src)])
    out = convert_npz(src, dst)
    console.print(f"wrote {out} ({out.stat().st_size / 2**30:.2f} GiB, uncompressed)", highlight=False,
                  soft_wrap=True)
