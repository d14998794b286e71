"""Object2Vec hyperparameters: parsed once from SageMaker's string map into a typed, validated object.

Every documented hyperparameter (``../shared/reference/object2vec.md`` section 3) is declared in
:data:`SPECS` with its type, range or choices and default. :func:`parse_hyperparameters` accepts every
spelling seen in the wild (``"True"``/``"true"``, JSON-quoted strings, ``"auto"``, comma lists with or
without spaces, ``"4e-4"``), applies the resolution rules (``enc1_network=enc0`` clones enc0,
``pooled_embedding`` uses ``enc_dim`` as token size, ``layers=auto``) and reports **every** bad key in one
:class:`~object2vec.errors.UserError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from object2vec.errors import UserError

log = logging.getLogger(__name__)

ENCODER_NETWORKS = ("hcnn", "bilstm", "pooled_embedding")
COMPARATORS = ("hadamard", "concat", "abs_diff")
OPTIMIZERS = ("adadelta", "adagrad", "adam", "sgd", "rmsprop")
SPARSE_OPTIMIZERS = ("adam", "adagrad", "sgd")  # lazy (row_sparse) updates exist for these only
AUTO_LAYERS = {"hcnn": 4, "bilstm": 1, "pooled_embedding": 1}
POOLINGS = ("mean", "sum")  # pooled_embedding's encN_pooling (extension; mean is the original)
ENCODER_ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu")  # pooled_embedding's encN_activation
# The docs say [A-Za-z0-9._], but AWS's SNLI notebook passes "glove.840B-trim.txt": allow "-".
FILE_NAME = re.compile(r"[A-Za-z0-9._-]+")

# Platform and MXNet keys that SageMaker, the SDK, tuning jobs and AWS notebooks send: accepted, unused.
IGNORED_KEYS = ("_tuning_objective_metric", "_kvstore", "_num_gpus", "_num_kv_servers")
IGNORED_PREFIXES = ("sagemaker_",)
WARNED_KEYS = ("feature_dim",)  # sent by the SDK's RecordSet path; meaningless for JSON Lines input


@dataclass(frozen=True)
class Spec:
    """How one hyperparameter is read: its kind, default and allowed values."""

    kind: str  # int | float | bool | choice | layers | comparators | filename
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    required: bool = False

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
            return "a comma-separated, non-repeating subset of " + ", ".join(COMPARATORS)
        return "a file name of letters, digits, '.', '_' and '-' in the auxiliary channel, or ''"


def _fmt(x: float | None) -> str:
    return "-inf" if x is None else (str(int(x)) if float(x).is_integer() and abs(x) >= 1 else repr(x))


def _encoder_specs(side: int) -> dict[str, Spec]:
    """The ``encN_*`` keys. enc1's network may also be ``enc0`` (clone enc0's settings)."""
    networks = ENCODER_NETWORKS + (("enc0",) if side == 1 else ())
    return {
        f"enc{side}_network": Spec("choice", "hcnn" if side == 0 else "enc0", choices=networks),
        f"enc{side}_max_seq_len": Spec("int", None, 1, 5000, required=side == 0),
        f"enc{side}_vocab_size": Spec("int", None, 2, 3_000_000, required=side == 0),
        f"enc{side}_token_embedding_dim": Spec("int", 300, 2, 1000),
        f"enc{side}_layers": Spec("layers", None, 1, 4),  # None = auto
        f"enc{side}_cnn_filter_width": Spec("int", 3, 1, 9),
        f"enc{side}_vocab_file": Spec("filename", ""),
        f"enc{side}_pretrained_embedding_file": Spec("filename", ""),
        f"enc{side}_freeze_pretrained_embedding": Spec("bool", True),
    }


SPECS: dict[str, Spec] = {
    **_encoder_specs(0),
    **_encoder_specs(1),
    "bucket_width": Spec("int", 0, 0, 100),
    "comparator_list": Spec("comparators", COMPARATORS),
    "dropout": Spec("float", 0.0, 0.0, 1.0),
    "early_stopping_patience": Spec("int", 3, 1, 5),
    "early_stopping_tolerance": Spec("float", 0.01, 1e-6, 0.1),
    "enc_dim": Spec("int", 4096, 4, 10000),
    "epochs": Spec("int", 30, 1, 100),
    "learning_rate": Spec("float", 0.0004, 1e-6, 1.0),
    "mini_batch_size": Spec("int", 32, 1, 10000),
    "mlp_activation": Spec("choice", "linear", choices=("tanh", "relu", "linear")),
    "mlp_dim": Spec("int", 512, 2, 10000),
    "mlp_layers": Spec("int", 2, 0, 10),
    "negative_sampling_rate": Spec("int", 0, 0, 100),
    "num_classes": Spec("int", 2, 2, 30),
    "optimizer": Spec("choice", "adam", choices=OPTIMIZERS),
    "output_layer": Spec("choice", "softmax", choices=("softmax", "mean_squared_error")),
    "tied_token_embedding_weight": Spec("bool", False),
    "token_embedding_storage_type": Spec("choice", "dense", choices=("dense", "row_sparse")),
    "weight_decay": Spec("float", 0.0, 0.0, 10000.0),
    # Extensions (not in the original; the defaults keep the original's behaviour).
    "in_batch_softmax_weight": Spec("float", 0.0, 0.0, 100.0),  # 0: off
    "in_batch_softmax_temperature": Spec("float", 0.05, 0.001, 10.0),
    "token_weighting": Spec("choice", "none", choices=("none", "idf")),  # pooled_embedding only
    # pooled_embedding only: sum instead of mean, and an activation on the pooled vector
    **{f"enc{side}_{key}": spec for side in (0, 1) for key, spec in (
        ("pooling", Spec("choice", "mean", choices=POOLINGS)),
        ("activation", Spec("choice", "linear", choices=ENCODER_ACTIVATIONS)))},
}


@dataclass(frozen=True)
class EncoderConfig:
    """One encoder's resolved settings (after cloning, ``auto`` layers and the pooled-embedding rule)."""

    network: str
    vocab_size: int
    max_seq_len: int
    token_embedding_dim: int
    layers: int
    cnn_filter_width: int
    vocab_file: str = ""
    pretrained_embedding_file: str = ""
    freeze_pretrained_embedding: bool = True
    pooling: str = "mean"  # pooled_embedding: "mean" or "sum" of the token embeddings
    activation: str = "linear"  # pooled_embedding: applied to the pooled vector


@dataclass(frozen=True)
class Hyperparameters:
    """Every Object2Vec hyperparameter, typed and validated. Build with :func:`parse_hyperparameters`."""

    enc0_network: str
    enc0_max_seq_len: int
    enc0_vocab_size: int
    enc0_token_embedding_dim: int
    enc0_layers: int | None
    enc0_cnn_filter_width: int
    enc0_vocab_file: str
    enc0_pretrained_embedding_file: str
    enc0_freeze_pretrained_embedding: bool
    enc1_network: str
    enc1_max_seq_len: int | None
    enc1_vocab_size: int | None
    enc1_token_embedding_dim: int
    enc1_layers: int | None
    enc1_cnn_filter_width: int
    enc1_vocab_file: str
    enc1_pretrained_embedding_file: str
    enc1_freeze_pretrained_embedding: bool
    bucket_width: int
    comparator_list: tuple[str, ...]
    dropout: float
    early_stopping_patience: int
    early_stopping_tolerance: float
    enc_dim: int
    epochs: int
    learning_rate: float
    mini_batch_size: int
    mlp_activation: str
    mlp_dim: int
    mlp_layers: int
    negative_sampling_rate: int
    num_classes: int
    optimizer: str
    output_layer: str
    tied_token_embedding_weight: bool
    token_embedding_storage_type: str
    weight_decay: float
    in_batch_softmax_weight: float = 0.0
    in_batch_softmax_temperature: float = 0.05
    token_weighting: str = "none"
    enc0_pooling: str = "mean"
    enc0_activation: str = "linear"
    enc1_pooling: str = "mean"
    enc1_activation: str = "linear"
    enc0: EncoderConfig = field(init=False, compare=False, repr=False)
    enc1: EncoderConfig = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "enc0", _resolve_encoder(self, 0))
        object.__setattr__(self, "enc1", _resolve_encoder(self, 1))

    def encoder(self, side: int) -> EncoderConfig:
        """The resolved config of encoder ``side`` (0 or 1)."""
        return (self.enc0, self.enc1)[side]

    @property
    def is_regression(self) -> bool:
        """True for ``output_layer=mean_squared_error`` (one real-valued output)."""
        return self.output_layer == "mean_squared_error"

    @property
    def num_outputs(self) -> int:
        """Width of the output layer: ``num_classes`` for softmax, 1 for regression."""
        return 1 if self.is_regression else self.num_classes

    def to_dict(self) -> dict[str, Any]:
        """The declared values (JSON-friendly), from which :func:`parse_hyperparameters` rebuilds this."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        out["comparator_list"] = ",".join(self.comparator_list)
        for side in (0, 1):
            if out[f"enc{side}_layers"] is None:
                out[f"enc{side}_layers"] = "auto"
        # None means "not set" (enc1_max_seq_len / enc1_vocab_size when taken from enc0); parse
        # rejects None, so leave those keys out.
        return {k: v for k, v in out.items() if v is not None}


def _resolve_encoder(hp: Hyperparameters, side: int) -> EncoderConfig:
    src = 0 if side == 1 and hp.enc1_network == "enc0" else side  # rule 1: enc1=enc0 clones enc0
    get = lambda name: getattr(hp, f"enc{src}_{name}")  # noqa: E731
    network = get("network")
    token_dim = hp.enc_dim if network == "pooled_embedding" else get("token_embedding_dim")
    layers = get("layers")
    return EncoderConfig(
        network=network,
        vocab_size=get("vocab_size"),
        max_seq_len=get("max_seq_len"),
        token_embedding_dim=token_dim,
        layers=AUTO_LAYERS[network] if layers is None or network == "pooled_embedding" else layers,
        cnn_filter_width=get("cnn_filter_width"),
        vocab_file=get("vocab_file"),
        pretrained_embedding_file=get("pretrained_embedding_file"),
        freeze_pretrained_embedding=get("freeze_pretrained_embedding"),
        pooling=get("pooling"),
        activation=get("activation"),
    )


def _pooling_problems(v: dict[str, Any]) -> list[str]:
    """``encN_pooling`` / ``encN_activation`` set where they would be ignored."""
    problems = []
    for side in (0, 1):
        for key in (f"enc{side}_pooling", f"enc{side}_activation"):
            if v[key] == SPECS[key].default:
                continue
            network = v[f"enc{side}_network"]
            if network == "enc0":
                problems.append(f"{key}={v[key]}: enc1_network=enc0 clones enc0's settings; set "
                                f"enc0_{key[5:]} instead")
            elif network != "pooled_embedding":
                problems.append(f"{key}={v[key]}: only a pooled_embedding encoder pools token "
                                f"embeddings, enc{side}_network is {network}")
    return problems


# ---------------------------------------------------------------------------------------------------------
# Parsing


class _Invalid(ValueError):
    """One key's value is not allowed; the message says why."""


def _decode(value: Any) -> Any:
    """SageMaker sends strings; SDK paths that ``json.dumps`` send ``'"hcnn"'`` or ``'4096'``."""
    if isinstance(value, str):
        text = value.strip()
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded.strip() if isinstance(decoded, str) else decoded
    return value


def _to_number(value: Any, spec: Spec) -> float | int:
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise _Invalid(spec.allowed())
    if isinstance(value, int):
        # compared exactly: float() of an int over ~309 digits raises OverflowError (json.loads
        # turns "1000...0" into such an int), and every allowed value fits a float anyway
        if (spec.low is not None and value < spec.low) or \
                (spec.high is not None and value > spec.high):
            raise _Invalid(spec.allowed())
        return value if spec.kind != "float" else float(value)
    try:
        number = float(value)  # a string: "abc", "4e-4", or digits past the int-string limit
    except (TypeError, ValueError, OverflowError):
        raise _Invalid(spec.allowed()) from None
    if not math.isfinite(number):
        raise _Invalid(spec.allowed())
    if spec.kind in ("int", "layers"):
        if not number.is_integer():
            raise _Invalid(spec.allowed())
        number = int(number)
    if (spec.low is not None and number < spec.low) or (spec.high is not None and number > spec.high):
        raise _Invalid(spec.allowed())
    return number


def _text(value: Any, spec: Spec) -> str:
    """``str(value)``; an int past Python's 4300-digit limit has no text and is just invalid."""
    try:
        return str(value)
    except ValueError:
        raise _Invalid(spec.allowed()) from None


def _convert(value: Any, spec: Spec) -> Any:
    """Convert one decoded value to the spec's type, or raise :class:`_Invalid`."""
    if spec.kind in ("int", "float"):
        return _to_number(value, spec)
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        text = _text(value, spec).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        raise _Invalid(spec.allowed())
    if spec.kind == "choice":
        text = _text(value, spec).strip().lower()
        if text not in spec.choices:
            raise _Invalid(spec.allowed())
        return text
    if spec.kind == "layers":
        if isinstance(value, str) and value.strip().lower() == "auto":
            return None
        return _to_number(value, spec)
    if spec.kind == "comparators":
        items = [p.strip().lower() for p in _text(value, spec).split(",")]
        if not items or any(p not in COMPARATORS for p in items) or len(set(items)) != len(items):
            raise _Invalid(spec.allowed())
        return tuple(items)
    if spec.kind == "filename":
        text = "" if value is None else _text(value, spec).strip()
        if text and (not FILE_NAME.fullmatch(text) or text in (".", "..")):
            raise _Invalid(spec.allowed())
        return text
    raise AssertionError(f"unknown spec kind {spec.kind}")


MAX_SHOWN = 40  # characters of a value quoted in an error message


def _shown(value: Any) -> str:
    """``repr(value)``, abbreviated when long: the failure reason SageMaker shows is 1024
    characters, and a 5000-digit value must not crowd out the other problems."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's 4300-digit limit cannot even be printed
        return f"<an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits>"
    if len(text) <= MAX_SHOWN:
        return text
    return f"{text[:MAX_SHOWN - 8]}...{text[-4:]} ({len(text)} characters)"


def _is_ignored(key: str) -> bool:
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES)


def parse_hyperparameters(raw: Mapping[str, Any], saved: bool = False) -> Hyperparameters:
    """Parse SageMaker's hyperparameter map into :class:`Hyperparameters`.

    Args:
        raw: ``hyperparameters.json`` as loaded (values usually strings).
        saved: ``raw`` is a resolved map this container wrote (:meth:`Hyperparameters.to_dict` in an
            artifact): the user was warned about it when the job ran, so nothing is logged again.

    Returns:
        The validated, resolved hyperparameters.

    Raises:
        UserError: naming every bad key at once -- unknown keys, missing required keys
            (``enc0_max_seq_len``, ``enc0_vocab_size``; ``enc1_*`` when enc1 is not cloned), values out of
            range or not of the right type, and cross-key conflicts (tied embeddings with different
            vocabularies, ``row_sparse`` with an optimizer that has no lazy update).
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key in sorted(raw):
        if key in SPECS:
            value = raw[key]
            try:
                values[key] = _convert(_decode(value), SPECS[key])
            except _Invalid as exc:
                problems.append(f"{key}={_shown(value)}: must be {exc}")
        elif key in WARNED_KEYS:
            log.warning("Ignoring hyperparameter %s=%s: it has no meaning for Object2Vec", key,
                        _shown(raw[key]))
        elif not _is_ignored(key):
            close = difflib.get_close_matches(key, SPECS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{key}={_shown(raw[key])}: unknown hyperparameter{hint}")
    for key, spec in SPECS.items():
        if key not in values and key not in raw:
            if spec.required:
                problems.append(f"{key}: required, must be {spec.allowed()}")
            values[key] = spec.default
    if not problems:
        problems += _cross_key_problems(values)
    if problems:
        raise UserError(
            f"Invalid hyperparameters ({len(problems)} problem{'s' * (len(problems) > 1)}):\n  - "
            + "\n  - ".join(problems))
    if values["token_embedding_storage_type"] == "row_sparse" and values["bucket_width"]:
        log.warning("token_embedding_storage_type=row_sparse switches bucketing off (bucket_width %d -> 0)",
                    values["bucket_width"])
        values["bucket_width"] = 0
    hp = Hyperparameters(**values)
    if not saved:
        _warn_token_dim_overridden(hp, raw)
    return hp


def _warn_token_dim_overridden(hp: Hyperparameters, raw: Mapping[str, Any]) -> None:
    """AWS's warning when pooled_embedding replaces a token dim the user set with ``enc_dim``.

    Only a key present in ``raw`` counts: the default (300) is replaced silently, or every
    pooled_embedding job would warn about a value nobody chose.
    """
    for side in (0, 1):
        cloned = side == 1 and hp.enc1_network == "enc0"  # enc1 then takes enc0's value
        key = f"enc{0 if cloned else side}_token_embedding_dim"
        declared = getattr(hp, key)
        if key in raw and hp.encoder(side).network == "pooled_embedding" and declared != hp.enc_dim:
            log.warning("Inconsistent enc_dim and token_embedding_dim found for token-embedding-encoder "
                        "enc%d: %d vs %d. Setting token embedding dim to be %d",
                        side, hp.enc_dim, declared, hp.enc_dim)


def _cross_key_problems(v: dict[str, Any]) -> list[str]:
    """Rules that involve several keys; run only when every key parsed on its own."""
    problems = []
    if v["enc1_network"] != "enc0":
        for key in ("enc1_max_seq_len", "enc1_vocab_size"):
            if v[key] is None:
                problems.append(f"{key}: required when enc1_network={v['enc1_network']} "
                                f"(it is only taken from enc0 when enc1_network=enc0), must be "
                                f"{SPECS[key].allowed()}")
    if v["token_embedding_storage_type"] == "row_sparse" and v["optimizer"] not in SPARSE_OPTIMIZERS:
        problems.append(f"optimizer={v['optimizer']!r}: token_embedding_storage_type=row_sparse needs "
                        f"one of {', '.join(SPARSE_OPTIMIZERS)}")
    if v["in_batch_softmax_weight"] > 0 and (v["output_layer"] != "softmax" or v["num_classes"] != 2):
        problems.append(f"in_batch_softmax_weight={v['in_batch_softmax_weight']:g}: needs "
                        f"output_layer=softmax with num_classes=2 (its positives are the pairs "
                        f"labelled 1), got output_layer={v['output_layer']}, "
                        f"num_classes={v['num_classes']}")
    if v["token_weighting"] != "none" and "pooled_embedding" not in (
            v["enc0_network"], v["enc0_network"] if v["enc1_network"] == "enc0" else v["enc1_network"]):
        problems.append(f"token_weighting={v['token_weighting']}: weights the mean of a "
                        f"pooled_embedding encoder, and neither encoder is one")
    problems += _pooling_problems(v)
    if v["tied_token_embedding_weight"] and not problems:
        hp = Hyperparameters(**v)
        a, b = hp.enc0, hp.enc1
        if a.vocab_size != b.vocab_size or a.token_embedding_dim != b.token_embedding_dim:
            problems.append(
                "tied_token_embedding_weight=True: both encoders must share vocabulary size and token "
                f"embedding dim, got enc0 {a.vocab_size}x{a.token_embedding_dim} vs enc1 "
                f"{b.vocab_size}x{b.token_embedding_dim}")
    return problems
