"""The accelerator, below training and timing alike: leasing a GPU per job (:mod:`.devices`) and the
settings a model runs under on it (:mod:`.settings`)."""
