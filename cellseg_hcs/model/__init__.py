"""Models: the model file and its metadata, the networks, and the shipped models."""
