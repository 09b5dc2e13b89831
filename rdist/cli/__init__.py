"""The `rdist` command line: one module per command (`rdist.cli.app` assembles them), on the public API."""
