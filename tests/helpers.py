"""Test-only callbacks and losses, added to a run from the command line (`+callbacks.NAME._target_=...`,
`loss._target_=...`)."""

from __future__ import annotations

import os
import signal as signal_module

import lightning as L
import torch
from torch import nn


class SignalAtStep(L.Callback):
    """Send this process `signal` when training reaches `step` in a fit that did not resume from a
    checkpoint: SIGKILL is a crash with no chance to clean up; SIGUSR2 is what SLURM sends through
    submitit before a time limit or at a preemption."""

    def __init__(self, step: int, signal: str = "SIGKILL") -> None:
        self.step, self.signal = step, getattr(signal_module, signal)

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step and trainer.ckpt_path is None:
            os.kill(os.getpid(), self.signal)


class NaNAtCall(nn.Module):
    """MSE, except that training call number `call` (0-based) returns NaN: a loss that blows up once
    (under DDP, on every rank, or only on rank `rank` if given)."""

    def __init__(self, call: int, rank: int | None = None) -> None:
        super().__init__()
        self.call, self.calls, self.rank = call, 0, rank

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = (pred - target).pow(2).mean()
        if self.training:
            self.calls += 1
            this_rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            if self.calls - 1 == self.call and self.rank in (None, this_rank):
                return loss * float("nan")
        return loss


class RecordedMSE(nn.Module):
    """MSE that keeps the value of each training call in ``RecordedMSE.values``: what a run should log."""

    values: list[float] = []

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = (pred - target).pow(2).mean()
        if self.training:
            RecordedMSE.values.append(loss.item())
        return loss
