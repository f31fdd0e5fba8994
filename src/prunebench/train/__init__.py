"""Training of one prune state: loop, checkpoints, metrics, seeding."""
