"""`harness train`: one trainer for every learned system.

A system that can be trained exposes `training()` returning a `Trainable` (spec.py): its
architecture and modules, its batches (drawn on the fly, deterministic from (seed, step)), its
optimisers and stages, its losses and its validation. The trainer (trainer.py) owns the loop:
stages, optimiser steps in the declared order, learning-rate schedules, gradient clipping,
logging, checkpoints (safetensors + JSON sidecar, harness.checkpoints) and resume; report.py
writes the loss curve and the training report beside the checkpoint.
"""

from harness.training.spec import OptimiserSpec, Stage, Trainable, cached_data

__all__ = ["OptimiserSpec", "Stage", "Trainable", "cached_data"]
