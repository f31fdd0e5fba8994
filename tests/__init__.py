"""prunebench tests: unit tests, and real Snakemake workflows under tests/workflow."""
