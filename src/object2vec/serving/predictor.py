"""Decoded instances -> predictions, with the model loaded once per worker. No HTTP here.

Mode per instance (object2vec.md section 5.1): ``in0`` and ``in1`` -> ``{"scores": [...]}`` (class
probabilities, or one value for regression); only ``in0`` -> ``{"embeddings": [...]}`` from enc0;
only ``in1`` -> embeddings from enc1. One request may mix modes: the instances are grouped by mode,
each group runs batched, and the results are put back in request order. Other keys (``label``...)
are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from object2vec.artifact import LoadedModel, load_artifact
from object2vec.errors import UserError
from object2vec.model.tokens import Tokens

SIDES = ("in0", "in1")
SCORES, EMBEDDINGS = "scores", "embeddings"
BATCH_SIZE = 1024  # instances per forward pass
TOKEN_BUDGET = 1 << 18  # padded tokens per forward pass: bounds hcnn/bilstm memory for long inputs


class InvalidInstance(UserError):
    """An instance the model cannot take; ``index`` is its 0-based position in the request."""

    status = 400

    def __init__(self, index: int, problem: str, where: Callable[[int], str] | None = None,
                 where_last: bool = False) -> None:
        self.index, self.problem = index, problem
        place = (where or _where)(index)
        super().__init__(f"{problem} ({place})" if where_last else f"{place}: {problem}")


def _where(index: int) -> str:
    return f"instance {index}"


@dataclass
class _Group:
    """Instances of one mode: their request positions and, per side used, their truncated ids."""

    sides: tuple[int, ...]  # (0, 1) for scores, (0,) or (1,) for embeddings
    positions: list[int]
    seqs: tuple[list[list[int]], ...]  # one list of sequences per entry of ``sides``


class Predictor:
    """Holds one loaded model and answers :meth:`predict`.

    Args:
        loaded: the model from :func:`object2vec.artifact.load_artifact` (in eval mode).
        device: where the model lives; inputs are moved there.
        batch_size: instances per forward pass.
    """

    def __init__(self, loaded: LoadedModel, device: torch.device | str = "cpu",
                 batch_size: int = BATCH_SIZE) -> None:
        self.loaded = loaded
        self.model = loaded.model.eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        config = self.model.config
        self.vocab_sizes = (config.encoder(0).vocab_size, config.encoder(1).vocab_size)
        self.max_seq_lens = (config.encoder(0).max_seq_len, config.encoder(1).max_seq_len)

    @classmethod
    def from_model_dir(cls, model_dir: Path, device: torch.device | str = "cpu") -> "Predictor":
        """Load the artifact in ``model_dir``.

        Raises:
            UserError: no readable Object2Vec model there.
        """
        return cls(load_artifact(model_dir, device=device), device=device)

    def predict(self, instances: Sequence[Any], max_seqlens: tuple[int, int] | None = None,
                where: Callable[[int], str] | None = None) -> list[dict[str, np.ndarray]]:
        """One prediction per instance, in order: ``{"scores": (C,)}`` or
        ``{"embeddings": (enc_dim,)}``, float32 numpy arrays.

        Args:
            instances: decoded JSON values, each ``{"in0": [ids], "in1": [ids]}`` or one of the two.
            max_seqlens: truncate enc0 / enc1 inputs to these lengths (default: the training
                ``encN_max_seq_len``). Ids past the cut are neither used nor checked, as in
                training.
            where: names an instance in error messages (default ``"instance <index>"``).

        Raises:
            InvalidInstance: the first invalid instance, with its index and the problem.
        """
        groups = self._group(instances, max_seqlens or self.max_seq_lens, where)
        self._check_ids(groups, where)
        results: list[dict[str, np.ndarray] | None] = [None] * len(instances)
        with torch.inference_mode():
            for group in groups.values():
                key = SCORES if len(group.sides) == 2 else EMBEDDINGS
                for start, outputs in self._run(group):  # outputs (b, C) or (b, enc_dim)
                    for row, position in enumerate(group.positions[start: start + len(outputs)]):
                        results[position] = {key: outputs[row]}
        return results  # type: ignore[return-value]  # every position is filled by its group

    # -- validation ------------------------------------------------------------------------------

    def _group(self, instances: Sequence[Any], limits: tuple[int, int],
               where: Callable[[int], str] | None) -> dict[tuple[int, ...], _Group]:
        """Sort instances into modes, check their structure, and truncate their sequences."""
        groups: dict[tuple[int, ...], _Group] = {}
        for index, instance in enumerate(instances):
            problem = _structure_problem(instance)
            if problem is not None:
                self._check_ids(groups, where)  # an earlier instance may have a bad id
                raise InvalidInstance(index, problem, where)
            sides = tuple(s for s in (0, 1) if SIDES[s] in instance)
            group = groups.get(sides)
            if group is None:
                group = groups[sides] = _Group(sides, [], tuple([] for _ in sides))
            group.positions.append(index)
            for slot, side in enumerate(sides):
                group.seqs[slot].append(instance[SIDES[side]][: limits[side]])
        return groups

    def _check_ids(self, groups: dict[tuple[int, ...], _Group],
                   where: Callable[[int], str] | None) -> None:
        """Check every id of each side of each group at once (C-speed builtins); if any is bad,
        walk the instances to raise for the first one in request order."""
        first: InvalidInstance | None = None
        for group in groups.values():
            for slot, side in enumerate(group.sides):
                flat = list(chain.from_iterable(group.seqs[slot]))
                ok = set(map(type, flat)) == {int}  # bool is a subclass of int, not int
                if ok and min(flat) >= 0 and max(flat) < self.vocab_sizes[side]:
                    continue
                for position, seq in zip(group.positions, group.seqs[slot]):
                    problem = self._id_problem(position, side, seq, where)
                    if problem is not None:
                        if first is None or problem.index < first.index:
                            first = problem
                        break
        if first is not None:
            raise first

    def _id_problem(self, index: int, side: int, seq: list[Any],
                    where: Callable[[int], str] | None) -> InvalidInstance | None:
        key, vocab = SIDES[side], self.vocab_sizes[side]
        for tok in seq:
            if type(tok) is not int:
                rule = "integers, not booleans" if type(tok) is bool else "integers"
                return InvalidInstance(index, f'"{key}" holds {_show(tok)}; token ids must be '
                                       f"{rule}", where)
            if tok < 0:
                return InvalidInstance(index, f'"{key}" holds negative token id {tok}', where)
            if tok >= vocab:
                return InvalidInstance(index, f"Inconsistent vocab for {key} found. Vocab id "
                                       f'"{tok}" is not less than vocab_size={vocab}', where,
                                       where_last=True)
        return None

    # -- inference -------------------------------------------------------------------------------

    def _run(self, group: _Group) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, outputs)`` per batch of ``group``: outputs ``(b, C)`` probabilities (or
        ``(b, 1)`` values) for pairs, ``(b, enc_dim)`` embeddings for one side; float32 numpy."""
        sides = [_FlatSide.build(seqs) for seqs in group.seqs]
        longest = max(int(side.lengths.max()) for side in sides)
        step = max(1, min(self.batch_size, TOKEN_BUDGET // longest))
        for start in range(0, len(group.positions), step):
            batch = [side.tokens(start, start + step).to(self.device) for side in sides]
            if len(group.sides) == 2:
                out = self.model.scores(batch[0], batch[1])  # (b, C) or (b, 1)
            else:
                out = self.model.encode(group.sides[0], batch[0])  # (b, enc_dim)
            yield start, out.float().cpu().numpy()


@dataclass
class _FlatSide:
    """One side's sequences concatenated: sequence ``i`` is
    ``ids[begins[i] : begins[i] + lengths[i]]``."""

    ids: np.ndarray  # (N,) int64
    begins: np.ndarray  # (B,) int64
    lengths: np.ndarray  # (B,) int64

    @classmethod
    def build(cls, seqs: list[list[int]]) -> "_FlatSide":
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        ids = np.fromiter(chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum()))
        return cls(ids, np.cumsum(lengths) - lengths, lengths)

    def tokens(self, start: int, stop: int) -> Tokens:
        """Sequences ``start:stop`` as a :class:`Tokens` batch (offsets relative to the batch)."""
        lengths = self.lengths[start:stop]
        first = int(self.begins[start])
        last = first + int(lengths.sum())
        return Tokens(torch.from_numpy(self.ids[first:last]),
                      torch.from_numpy(self.begins[start:stop] - first), torch.from_numpy(lengths))


def _structure_problem(instance: Any) -> str | None:
    """What is wrong with the shape of one instance, or None."""
    if not isinstance(instance, dict):
        return f'expected a JSON object with "in0" and/or "in1", got {_kind(instance)}'
    if SIDES[0] not in instance and SIDES[1] not in instance:
        return 'has neither "in0" nor "in1" (send both for scores, one for its embedding)'
    for key in SIDES:
        seq = instance.get(key, [0])
        if type(seq) is not list or not seq:
            return f'"{key}" must be a non-empty list of integer token ids, got {_show(seq)}'
    return None


def _kind(value: Any) -> str:
    """JSON's name for the type of a decoded value."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _show(value: Any, limit: int = 60) -> str:
    """A value as JSON, shortened for messages."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
