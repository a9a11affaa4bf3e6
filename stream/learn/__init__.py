"""The learned local tier: a student per route trained on the model's own answers."""
