"""Whole workflows built from the library (train, then compare), the highest layer below the CLI."""
