"""Comparator: combine the two encodings ``u, v (B, d)`` into one vector, in ``comparator_list`` order."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from object2vec.registry import Registry

Op = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
COMPARATORS: Registry[tuple[Op, int]] = Registry("comparator")  # name -> (op, output width in units of d)

COMPARATORS.register("hadamard")((lambda u, v: u * v, 1))  # (B, d)
COMPARATORS.register("concat")((lambda u, v: torch.cat([u, v], dim=1), 2))  # (B, 2d)
COMPARATORS.register("abs_diff")((lambda u, v: (u - v).abs(), 1))  # (B, d)


class Comparator(torch.nn.Module):
    """Concatenation of the named operations; output ``(B, width * d)``."""

    def __init__(self, names: Sequence[str], dim: int) -> None:
        super().__init__()
        self.names = tuple(names)
        self.ops = [COMPARATORS.get(n)[0] for n in self.names]  # resolved once, not in forward
        self.out_dim = dim * sum(COMPARATORS.get(n)[1] for n in self.names)

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.cat([op(u, v) for op in self.ops], dim=1)
