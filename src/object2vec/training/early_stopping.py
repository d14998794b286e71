"""Early stopping on a loss: stop after ``patience`` epochs without an improvement of ``tolerance``."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class EarlyStopping:
    """Tracks the best loss. An epoch *improves* when its loss is below ``best - tolerance`` (absolute).

    The best epoch (lowest loss, whatever the margin) is the one whose weights are kept.
    """

    patience: int
    tolerance: float
    best_loss: float = math.inf
    best_epoch: int = -1
    reference: float = math.inf  # loss that the next epoch has to beat by ``tolerance``
    bad_epochs: int = 0

    def update(self, epoch: int, loss: float) -> bool:
        """Record ``loss`` of ``epoch``; return True if it is the best so far (save its weights)."""
        if loss < self.reference - self.tolerance:
            self.reference, self.bad_epochs = loss, 0
        else:
            self.bad_epochs += 1
        if loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, epoch
            return True
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)
