"""Data: JSON Lines channels -> compact numpy token arrays -> batches."""
