"""Training and scoring models: datasets, augmentation, targets, the loop, tuning, metrics."""
