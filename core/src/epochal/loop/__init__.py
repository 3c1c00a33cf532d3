"""The training loop: the trainer, its hooks and callbacks, stops, processes."""
