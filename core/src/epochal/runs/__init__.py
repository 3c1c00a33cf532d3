"""Run folders: their files, checkpoints, experiments and k-fold runs over them."""
