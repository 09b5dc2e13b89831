"""`python -m rdist`: the `rdist` command, as torchrun starts it (`torchrun --nproc-per-node N -m rdist ...`)."""

from rdist.cli.app import main

if __name__ == "__main__":
    main()
