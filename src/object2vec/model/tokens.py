"""A batch of variable-length token sequences, held flat (no padding id: id 0 is a real token)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from object2vec.sequences import flat_ids

# Padded tokens per inference forward pass (serving and the catalog's embedding): bounds the memory
# of hcnn/bilstm encoders, which pad every sequence of a batch to its longest.
TOKEN_BUDGET = 1 << 18


@dataclass
class Tokens:
    """``B`` sequences concatenated: sequence ``b`` is ``ids[offsets[b] : offsets[b] + lengths[b]]``.

    The flat form feeds ``embedding_bag`` directly (pooled encoders); :meth:`padded` gives the
    ``(B, T)`` form with a mask for convolutional and recurrent encoders.
    """

    ids: torch.Tensor  # (N,) int64, N = lengths.sum()
    offsets: torch.Tensor  # (B,) int64
    lengths: torch.Tensor  # (B,) int64, every entry >= 1

    @classmethod
    def from_lists(cls, seqs: list[list[int]], device: torch.device | str = "cpu") -> Tokens:
        """Build from Python lists of integer ids (tests, serving). Every sequence must be
        non-empty."""
        return cls.from_flat(*flat_ids(seqs)).to(device)

    @classmethod
    def from_flat(cls, ids: np.ndarray, lengths: np.ndarray) -> Tokens:
        """Build from :func:`object2vec.sequences.flat_ids`' arrays (int64; shared, not copied)."""
        return cls(torch.from_numpy(ids), torch.from_numpy(np.cumsum(lengths) - lengths),
                   torch.from_numpy(lengths))

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def to(self, device: torch.device | str) -> Tokens:
        """The same batch on ``device``."""
        return Tokens(self.ids.to(device, non_blocking=True), self.offsets.to(device, non_blocking=True),
                      self.lengths.to(device, non_blocking=True))

    def slice(self, start: int, stop: int) -> Tokens:
        """Sequences ``start`` to ``stop - 1`` (a micro-batch), sharing ``ids``."""
        first = int(self.offsets[start]) if stop > start else 0
        end = int(self.offsets[stop - 1] + self.lengths[stop - 1]) if stop > start else 0
        return Tokens(self.ids[first:end], self.offsets[start:stop] - first, self.lengths[start:stop])

    def padded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids (B, T), mask (B, T) bool)`` with ``T = max(lengths)``; padded slots hold id 0, mask
        False."""
        batch, width = len(self), int(self.lengths.max())
        mask = torch.arange(width, device=self.ids.device).expand(batch, width) < self.lengths[:, None]
        out = torch.zeros(batch, width, dtype=self.ids.dtype, device=self.ids.device)
        out[mask] = self.ids  # row-major mask order == flat order
        return out, mask
