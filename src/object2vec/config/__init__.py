"""Configuration: SageMaker hyperparameters parsed into a typed, validated object."""
