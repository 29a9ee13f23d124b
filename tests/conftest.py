"""Shared test settings: one intra-op thread (the CI machine has two cores, and tests may run beside other work)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
