"""Training: the per-worker loop, the TorchTrainer built from config, and the train-and-register workflow."""
