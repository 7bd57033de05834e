"""Tracking, wired in one place: W&B and MLflow callbacks, W&B run logging, the W&B sweep file."""
