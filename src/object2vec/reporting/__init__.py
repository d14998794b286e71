"""Reporting: what a training job leaves in ``output/data`` -- metrics.json and a PNG of its curves."""
