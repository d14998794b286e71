"""The model: encoders, comparator, MLP head. Pure PyTorch, no I/O."""
