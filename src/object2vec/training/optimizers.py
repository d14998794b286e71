"""Optimizers by name. With ``row_sparse`` the token tables get a lazy optimizer that updates only the
rows present in the batch; every other parameter gets the dense optimizer of the same name."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from object2vec.registry import Registry

Factory = Callable[[Iterable[nn.Parameter], float, float], torch.optim.Optimizer]
OPTIMIZERS: Registry[Factory] = Registry("optimizer")  # dense: (params, lr, weight_decay) -> optimizer
SPARSE_OPTIMIZERS: Registry[Factory] = Registry("row_sparse optimizer")

OPTIMIZERS.register("adam")(lambda p, lr, wd: torch.optim.Adam(p, lr=lr, weight_decay=wd))
OPTIMIZERS.register("adagrad")(lambda p, lr, wd: torch.optim.Adagrad(p, lr=lr, weight_decay=wd))
OPTIMIZERS.register("sgd")(lambda p, lr, wd: torch.optim.SGD(p, lr=lr, weight_decay=wd))
OPTIMIZERS.register("rmsprop")(lambda p, lr, wd: torch.optim.RMSprop(p, lr=lr, weight_decay=wd))
OPTIMIZERS.register("adadelta")(lambda p, lr, wd: torch.optim.Adadelta(p, lr=lr, weight_decay=wd))

# Lazy variants: state (moments, accumulators) of a row changes only when the row is in the batch.
# Weight decay is applied by the training step to the touched rows (see LazyWeightDecay), since these
# torch optimizers do not take it with sparse gradients.
SPARSE_OPTIMIZERS.register("adam")(lambda p, lr, wd: torch.optim.SparseAdam(list(p), lr=lr))
SPARSE_OPTIMIZERS.register("adagrad")(lambda p, lr, wd: torch.optim.Adagrad(p, lr=lr))
SPARSE_OPTIMIZERS.register("sgd")(lambda p, lr, wd: torch.optim.SGD(p, lr=lr))


def build_optimizers(model: nn.Module, name: str, lr: float, weight_decay: float,
                     sparse_params: list[nn.Parameter] | None = None) -> list[torch.optim.Optimizer]:
    """One dense optimizer for every parameter, or a dense and a lazy one when ``sparse_params``
    (the token tables, whose gradients are sparse) are given."""
    sparse_params = sparse_params or []
    sparse_ids = {id(p) for p in sparse_params}
    dense = [p for p in model.parameters() if p.requires_grad and id(p) not in sparse_ids]
    optimizers = []
    if dense:
        optimizers.append(OPTIMIZERS.get(name)(dense, lr, weight_decay))
    trainable_sparse = [p for p in sparse_params if p.requires_grad]
    if trainable_sparse:
        optimizers.append(SPARSE_OPTIMIZERS.get(name)(trainable_sparse, lr, weight_decay))
    return optimizers
