"""Platform I/O: the SageMaker ``/opt/ml`` tree, its config files and the failure file."""
