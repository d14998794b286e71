"""Training: the loop, metrics, early stopping and the ``container/train`` entry point."""
