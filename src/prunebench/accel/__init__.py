"""The accelerator, below training and timing alike: leasing a GPU per job (:mod:`.devices`), the
settings a model runs under on it (:mod:`.settings`) and the kernel launches a region of eager code
makes on it (:mod:`.launches`)."""
