"""Training: options, data, the loop, distributed, checkpoints and the loader of a trained run (torch)."""
