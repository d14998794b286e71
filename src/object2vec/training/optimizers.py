"""Dense optimizers by name (``optimizer`` hyperparameter). With ``row_sparse`` the token tables take no
gradient and are updated by ``object2vec.training.sparse``; every other parameter uses these."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from object2vec.registry import Registry

Factory = Callable[[Iterable[nn.Parameter], float, float], torch.optim.Optimizer]
OPTIMIZERS: Registry[Factory] = Registry("optimizer")  # dense: (params, lr, weight_decay) -> optimizer

# registration order is the order the parser's error message lists them in
OPTIMIZERS.register("adadelta")(lambda p, lr, wd: torch.optim.Adadelta(p, lr=lr, weight_decay=wd))
OPTIMIZERS.register("adagrad")(lambda p, lr, wd: torch.optim.Adagrad(p, lr=lr, weight_decay=wd))
OPTIMIZERS.register("adam")(lambda p, lr, wd: torch.optim.Adam(p, lr=lr, weight_decay=wd))
OPTIMIZERS.register("sgd")(lambda p, lr, wd: torch.optim.SGD(p, lr=lr, weight_decay=wd))
OPTIMIZERS.register("rmsprop")(lambda p, lr, wd: torch.optim.RMSprop(p, lr=lr, weight_decay=wd))


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float,
                    pretrained: Iterable[nn.Parameter] = (), pretrained_lr: float = 0.0
                    ) -> torch.optim.Optimizer | None:
    """The dense optimizer over every parameter that takes a gradient (None if there is none);
    the ``pretrained`` ones (a transformer's) form a second group that steps at ``pretrained_lr``."""
    slow = {id(p) for p in pretrained if p.requires_grad}
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in slow]
    groups = [{"params": params}] if params else []
    if slow:
        groups.append({"params": [p for p in model.parameters() if id(p) in slow], "lr": pretrained_lr})
    return OPTIMIZERS.get(name)(groups, lr, weight_decay) if groups else None
