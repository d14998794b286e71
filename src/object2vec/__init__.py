"""SageMaker-compatible Object2Vec on PyTorch: pair embeddings, trained and served from one image."""

__version__ = "0.1.0"
