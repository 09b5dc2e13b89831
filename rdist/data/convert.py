"""`python -m rdist.data.convert SRC DST`: the one-time conversion of a compressed npz (`np.savez_compressed`)
into an uncompressed copy that rdist can memory-map (`rdist.data.npzfile.convert_npz`). A module of its own, which
the package does not import, so that `-m` runs it without importing it twice."""

from __future__ import annotations

import sys

from rdist.data.npzfile import convert_npz
from rdist.errors import RdistError


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m rdist.data.convert SRC.npz DST.npz  (an uncompressed copy that rdist can "
              "memory-map)", file=sys.stderr)
        return 2
    try:
        out = convert_npz(*argv)
    except RdistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size / 2**30:.2f} GiB, uncompressed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
