"""How a hyperparameter is declared: once, as a dataclass field whose metadata is a :class:`Setting`.

The model declares its encoder settings on :class:`object2vec.model.config.EncoderConfig` (each field
``f`` is the pair of keys ``enc0_f``, ``enc1_f``), the parser the others on
:class:`object2vec.config.hyperparameters.Hyperparameters`; parsing, validation, the defaults, the
error messages, the README table check and the artifact's saved map all read these declarations
(the layout of PyTorch-BigGraph's ``config.py``). This module imports nothing from the project, so
both sides can use it without a cycle.

Example::

    @dataclass(frozen=True)
    class EncoderConfig:
        pooling: str = setting("choice", "mean", options=("mean", "sum"), help="...")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

KINDS = ("int", "float", "bool", "choice", "layers", "comparators", "filename")
METADATA_KEY = "setting"


@dataclass(frozen=True)
class Setting:
    """One hyperparameter: its kind, default, allowed values and help.

    ``options`` is a fixed tuple, or a function returning a registry (read at each use, so that a
    declaration can name a registry whose module imports the declaring one).
    """

    kind: str  # one of KINDS
    default: Any = None
    low: float | None = None
    high: float | None = None
    options: tuple[str, ...] | Callable[[], Iterable[str]] = ()
    required: bool = False
    help: str = ""
    network: str = ""  # encoder keys: the one network that reads this key ("" = every network)
    does: str = ""  # with network: what that network does with it, for the error when set elsewhere

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown setting kind {self.kind!r}")

    @property
    def choices(self) -> tuple[str, ...]:
        """The allowed names (kinds choice and comparators), in the order messages list them."""
        return tuple(self.options() if callable(self.options) else self.options)

    def allowed(self) -> str:
        """Human-readable description of the allowed values, used in error messages."""
        if self.kind in ("int", "float"):
            word = "an integer" if self.kind == "int" else "a number"
            upper = "" if self.high is None else f", {_fmt(self.high)}"
            return f"{word} in [{_fmt(self.low)}{upper or ', inf'}]"
        if self.kind == "bool":
            return "True or False"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "layers":
            return f"'auto' or an integer in [{_fmt(self.low)}, {_fmt(self.high)}]"
        if self.kind == "comparators":
            return "a comma-separated, non-repeating subset of " + ", ".join(self.choices)
        return "a file name of letters, digits, '.', '_' and '-' in the auxiliary channel, or ''"


def _fmt(x: float | None) -> str:
    return "-inf" if x is None else (str(int(x)) if float(x).is_integer() and abs(x) >= 1 else repr(x))


def setting(kind: str, default: Any = None, low: float | None = None, high: float | None = None,
            **more: Any) -> Any:
    """A dataclass field declaring one hyperparameter (see :class:`Setting` for ``more``).

    The field has no dataclass default: the declared ``default`` is the parser's, and the value the
    object holds is always the parsed (or resolved) one.
    """
    return dataclasses.field(metadata={METADATA_KEY: Setting(kind, default, low, high, **more)})


def declared(cls: type) -> dict[str, Setting]:
    """The settings declared on the dataclass ``cls``, by field name, in field order."""
    return {f.name: f.metadata[METADATA_KEY] for f in dataclasses.fields(cls)
            if METADATA_KEY in f.metadata}
