"""Tiny reference models the project trains itself: the task definitions and the training script."""
