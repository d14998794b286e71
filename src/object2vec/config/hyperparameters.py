"""Object2Vec hyperparameters: parsed once from SageMaker's string map into a typed, validated object.

Every documented hyperparameter (``../shared/reference/object2vec.md`` section 3) is declared once, as a
field of :class:`Hyperparameters` or (the ``encN_*`` keys) of the model's
:class:`~object2vec.model.config.EncoderConfig`, with its kind, range or choices, default and help
(:mod:`object2vec.setting`); :data:`SPECS` collects them. The choices of the pluggable pieces
(encoders, comparators, optimizers, lazy updates) are their registries' names.
:func:`parse_hyperparameters` accepts every spelling seen in the wild (``"True"``/``"true"``,
JSON-quoted strings, ``"auto"``, comma lists with or
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from object2vec.errors import UserError
from object2vec.model.config import POOLED, TRANSFORMER, EncoderConfig
from object2vec.registry import Registry
from object2vec.setting import Setting, declared, setting

log = logging.getLogger(__name__)

SIDES = (0, 1)
CLONE = "enc0"  # enc1_network=enc0: enc1 takes enc0's settings (and its own weights)
# The docs say [A-Za-z0-9._], but AWS's SNLI notebook passes "glove.840B-trim.txt": allow "-".
FILE_NAME = re.compile(r"[A-Za-z0-9._-]+")

# Platform and MXNet keys that SageMaker, the SDK, tuning jobs and AWS notebooks send: accepted, unused.
IGNORED_KEYS = ("_tuning_objective_metric", "_kvstore", "_num_gpus", "_num_kv_servers")
IGNORED_PREFIXES = ("sagemaker_",)
WARNED_KEYS = ("feature_dim",)  # sent by the SDK's RecordSet path; meaningless for JSON Lines input


# The pluggable pieces' choices are their registries' names, read when a value is checked, not at
# import: the training modules that hold two of them import this one.
def _encoders() -> Registry:
    from object2vec.model.encoders import ENCODERS

    return ENCODERS


def _comparators() -> Registry:
    from object2vec.model.comparator import COMPARATORS

    return COMPARATORS


def _optimizers() -> Registry:
    from object2vec.training.optimizers import OPTIMIZERS

    return OPTIMIZERS


def _lazy_updates() -> Registry:
    from object2vec.training.sparse import LAZY_UPDATES  # lazy (row_sparse) updates exist for these

    return LAZY_UPDATES


ENCODER_SETTINGS: dict[str, Setting] = declared(EncoderConfig)  # field -> setting of encN_<field>
TOKENIZER_SETTINGS = ("tokenizer", "lowercase", "tokenizer_file")  # how a text side becomes ids
_TYPES = {"int": "int", "float": "float", "bool": "bool", "choice": "str", "layers": "int | None",
          "comparators": "tuple[str, ...]", "filename": "str"}  # field annotations, by kind


def _encoder_setting(name: str, side: int) -> Setting:
    """``encN_<name>``'s setting. enc1 may clone enc0: its network may also be ``enc0`` (the
    default), and a key enc0 requires is required of enc1 only when it is not cloned."""
    spec = ENCODER_SETTINGS[name]
    if side == 0:
        return spec
    if name == "network":
        return dataclasses.replace(spec, default=CLONE,
                                   options=lambda: (*ENCODER_SETTINGS["network"].choices, CLONE))
    return dataclasses.replace(spec, required=False)


def _with_encoder_keys(cls: type) -> type:
    """Declare the ``encN_*`` fields on ``cls`` (one per :class:`EncoderConfig` field and side,
    before its own fields), then make it a frozen dataclass."""
    annotations = {}
    for side in SIDES:
        for name in ENCODER_SETTINGS:
            spec = _encoder_setting(name, side)
            unset = spec.default is None and not spec.required and spec.kind != "layers"
            annotations[f"enc{side}_{name}"] = _TYPES[spec.kind] + " | None" * unset
            setattr(cls, f"enc{side}_{name}", dataclasses.field(metadata={"setting": spec}))
    cls.__annotations__ = {**annotations, **cls.__annotations__}
    return dataclass(frozen=True)(cls)


@_with_encoder_keys
class Hyperparameters:
    """Every Object2Vec hyperparameter, typed and validated. Build with :func:`parse_hyperparameters`.

    Each field is declared once with its :func:`~object2vec.setting.setting`: the ``encN_*`` ones on
    :class:`EncoderConfig` (two fields each, ``enc0_<f>`` and ``enc1_<f>``, added here), the others
    below. :data:`SPECS` collects them; parsing, validation, :meth:`to_dict` and the README check
    read nothing else.
    """

    bucket_width: int = setting("int", 0, 0, 100, help="bucket sequences by length; 0: off")
    comparator_list: tuple[str, ...] = setting(
        "comparators", ("hadamard", "concat", "abs_diff"), options=_comparators,
        help="how the two encodings are combined, in this order")
    dropout: float = setting("float", 0.0, 0.0, 1.0, help="on the encodings and the MLP layers")
    early_stopping_patience: int = setting("int", 3, 1, 5,
                                           help="epochs without improvement before stopping")
    early_stopping_tolerance: float = setting("float", 0.01, 1e-6, 0.1,
                                              help="relative improvement that counts")
    enc_dim: int = setting("int", 4096, 4, 10000, help="size of each encoding")
    epochs: int = setting("int", 30, 1, 100, help="passes over the train channel")
    learning_rate: float = setting("float", 0.0004, 1e-6, 1.0, help="optimizer step size")
    mini_batch_size: int = setting("int", 32, 1, 10000, help="global, over all processes")
    mlp_activation: str = setting("choice", "linear", options=("tanh", "relu", "linear"),
                                  help="activation of the hidden MLP layers")
    mlp_dim: int = setting("int", 512, 2, 10000, help="width of the hidden MLP layers")
    mlp_layers: int = setting("int", 2, 0, 10, help="hidden MLP layers")
    negative_sampling_rate: int = setting("int", 0, 0, 100,
                                          help="negatives drawn per positive pair")
    num_classes: int = setting("int", 2, 2, 30, help="softmax classes (ignored for regression)")
    optimizer: str = setting("choice", "adam", options=_optimizers, help="the dense optimizer")
    output_layer: str = setting("choice", "softmax", options=("softmax", "mean_squared_error"),
                                help="classification or regression")
    tied_token_embedding_weight: bool = setting("bool", False,
                                                help="one token table for both encoders")
    token_embedding_storage_type: str = setting(
        "choice", "dense", options=("dense", "row_sparse"),
        help="row_sparse: lazy updates of the batch's rows only")
    weight_decay: float = setting("float", 0.0, 0.0, 10000.0, help="L2 penalty")
    # Extensions (not in the original; the defaults keep the original's behaviour).
    in_batch_softmax_weight: float = setting("float", 0.0, 0.0, 100.0,
                                             help="extension: in-batch softmax loss weight; 0: off")
    in_batch_softmax_temperature: float = setting("float", 0.05, 0.001, 10.0,
                                                  help="extension: the in-batch softmax temperature")
    token_weighting: str = setting("choice", "none", options=("none", "idf"),
                                   help="extension: idf-weighted mean (pooled_embedding only)")
    early_stopping_metric: str = setting("choice", "loss", options=("loss", "retrieval_mrr"),
                                         help="extension: what early stopping and the best epoch "
                                              "watch; retrieval_mrr: the validation positives' own "
                                              "partners among all of theirs")
    pairs_per_document: int = setting("int", 1, 1, 1000,
                                      help="extension: (sentence, rest) pairs drawn from each "
                                           "document of a document train channel per epoch")
    hard_negatives: int = setting("int", 0, 0, 16,
                                  help="extension: per pair drawn from a document, negatives from "
                                       "the documents nearest to its own (mined with the model each "
                                       "epoch), scored in its in-batch softmax")
    # Transformer encoders (extension; read only when an encoder is encN_network=transformer).
    transformer_learning_rate: float = setting("float", 2e-5, 1e-8, 1.0,
                                               help="extension: step size of the transformer "
                                                    "encoders' parameters (their token tables too)")
    mixed_precision: str = setting("choice", "auto", options=("auto", "off", "bf16", "fp16"),
                                   help="extension: autocast on CUDA; auto: bf16 on GPUs that support "
                                        "it when an encoder is a transformer, else off")
    gradient_accumulation_steps: int = setting("int", 1, 1, 1024,
                                               help="extension: micro-batches per optimizer step; "
                                                    "in-batch negatives come from each micro-batch")
    # The catalog channel's index (extension; used only when the job has a catalog channel).
    catalog_index: str = setting("choice", "auto", options=("auto", "flat", "ivf"),
                                 help="extension: flat (exact), ivf (approximate), auto: flat up to "
                                      "100,000 items")
    catalog_ivf_lists: int = setting("int", 0, 0, 1_000_000,
                                     help="extension: ivf cells; 0: about sqrt(items)")
    catalog_ivf_probe: int = setting("int", 32, 1, 65536, help="extension: ivf cells searched per query")
    catalog_similarity: str = setting("choice", "cosine", options=("cosine", "inner_product"),
                                      help="extension: how top_k compares embeddings")
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
        out = {key: getattr(self, key) for key in SPECS}
        for key, spec in SPECS.items():
            if spec.kind == "comparators":
                out[key] = ",".join(out[key])
            elif spec.kind == "layers" and out[key] is None:
                out[key] = "auto"
        # None means "not set" (enc1_max_seq_len / enc1_vocab_size when taken from enc0); parse
        # rejects None, so leave those keys out.
        return {k: v for k, v in out.items() if v is not None}


SPECS: dict[str, Setting] = declared(Hyperparameters)  # every key, in field order


def _resolve_encoder(hp: Hyperparameters, side: int) -> EncoderConfig:
    """Encoder ``side``'s settings: enc1=enc0 clones enc0's (rule 1); pooled_embedding takes
    ``enc_dim`` as its token dim and has no layers; ``layers=auto`` takes the network's default."""
    src = 0 if side == 1 and hp.enc1_network == CLONE else side
    values = {name: getattr(hp, f"enc{src}_{name}") for name in ENCODER_SETTINGS}
    network = values["network"]
    auto_layers = _encoders().get(network).auto_layers
    if network == POOLED:
        values.update(token_embedding_dim=hp.enc_dim, layers=auto_layers)
    elif values["layers"] is None:
        values["layers"] = auto_layers
    return EncoderConfig(**values)


def _network_problems(v: dict[str, Any]) -> list[str]:
    """Keys that one network reads (``encN_pooling``, ...) set where they would be ignored."""
    problems = []
    for side in SIDES:
        for name, spec in ENCODER_SETTINGS.items():
            key = f"enc{side}_{name}"
            if not spec.network or v[key] == spec.default:
                continue
            network = v[f"enc{side}_network"]
            if network == CLONE:
                problems.append(f"{key}={v[key]}: enc1_network=enc0 clones enc0's settings; set "
                                f"enc0_{name} instead")
            elif network != spec.network:
                problems.append(f"{key}={v[key]}: only a {spec.network} encoder {spec.does}, "
                                f"enc{side}_network is {network}")
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


def _to_number(value: Any, spec: Setting) -> float | int:
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


def _text(value: Any, spec: Setting) -> str:
    """``str(value)``; an int past Python's 4300-digit limit has no text and is just invalid."""
    try:
        return str(value)
    except ValueError:
        raise _Invalid(spec.allowed()) from None


def _convert(value: Any, spec: Setting) -> Any:
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
        if not items or any(p not in spec.choices for p in items) or len(set(items)) != len(items):
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
            if spec.required and not _from_model_folder(key, values):
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


FROM_MODEL_FOLDER = ("vocab_size",)  # what a transformer side's model folder says (its tokenizer's size)


def _networks(v: dict[str, Any]) -> tuple[Any, Any]:
    """Each side's network with ``enc1_network=enc0`` resolved (from values parsed so far: a key
    that did not parse is None)."""
    enc0 = v.get("enc0_network")
    return enc0, enc0 if v.get("enc1_network") == CLONE else v.get("enc1_network")


def _from_model_folder(key: str, v: dict[str, Any]) -> bool:
    """Whether ``key`` is a transformer side's ``encN_vocab_size``: the model folder gives it."""
    match = re.fullmatch(r"enc([01])_(\w+)", key)
    return bool(match) and match[2] in FROM_MODEL_FOLDER and _networks(v)[int(match[1])] == TRANSFORMER


def _transformer_problems(v: dict[str, Any]) -> list[str]:
    """A transformer side reads its model folder and nothing else; its settings that cannot apply."""
    problems = []
    for side in SIDES:
        if v[f"enc{side}_network"] != TRANSFORMER:
            continue
        if not v[f"enc{side}_pretrained_model"]:
            problems.append(f"enc{side}_pretrained_model: required when enc{side}_network=transformer, "
                            f"must be the name of a model folder in the auxiliary channel")
        for name in ("vocab_file", "pretrained_embedding_file", "tokenizer_file"):
            if v[f"enc{side}_{name}"]:
                problems.append(f"enc{side}_{name}={v[f'enc{side}_{name}']!r}: a transformer encoder "
                                f"brings its own tokenizer and token embeddings (enc{side}_pretrained_model)")
    one = _networks(v)
    if v["tied_token_embedding_weight"] and TRANSFORMER in one and v["enc1_network"] != CLONE:
        problems.append("tied_token_embedding_weight=True with a transformer encoder shares one "
                        "transformer between the sides: set enc1_network=enc0")
    if TRANSFORMER in one and v["token_embedding_storage_type"] == "row_sparse":
        problems.append("token_embedding_storage_type=row_sparse: a transformer's token table trains "
                        "with its layers, densely")
    if v["mixed_precision"] == "fp16" and v["token_embedding_storage_type"] == "row_sparse":
        problems.append("mixed_precision=fp16: its loss scaling covers the dense optimizer, not the lazy "
                        "row_sparse updates; use bf16, off, or token_embedding_storage_type=dense")
    if v["gradient_accumulation_steps"] > 1 and v["token_embedding_storage_type"] == "row_sparse":
        problems.append(f"gradient_accumulation_steps={v['gradient_accumulation_steps']}: row_sparse "
                        f"tables update every micro-batch; use token_embedding_storage_type=dense")
    return problems


def _cross_key_problems(v: dict[str, Any]) -> list[str]:
    """Rules that involve several keys; run only when every key parsed on its own."""
    problems = _transformer_problems(v)
    if v["enc1_network"] != CLONE:  # what enc0 requires, an enc1 of its own requires too
        for key in (f"enc1_{name}" for name, spec in ENCODER_SETTINGS.items() if spec.required):
            if v[key] is None and not _from_model_folder(key, v):
                problems.append(f"{key}: required when enc1_network={v['enc1_network']} "
                                f"(it is only taken from enc0 when enc1_network=enc0), must be "
                                f"{SPECS[key].allowed()}")
    if v["token_embedding_storage_type"] == "row_sparse" and v["optimizer"] not in _lazy_updates():
        problems.append(f"optimizer={v['optimizer']!r}: token_embedding_storage_type=row_sparse needs "
                        f"one of {', '.join(_lazy_updates())}")
    if v["in_batch_softmax_weight"] > 0 and (v["output_layer"] != "softmax" or v["num_classes"] != 2):
        problems.append(f"in_batch_softmax_weight={v['in_batch_softmax_weight']:g}: needs "
                        f"output_layer=softmax with num_classes=2 (its positives are the pairs "
                        f"labelled 1), got output_layer={v['output_layer']}, "
                        f"num_classes={v['num_classes']}")
    if v["early_stopping_metric"] == "retrieval_mrr" and (v["output_layer"] != "softmax"
                                                           or v["num_classes"] != 2):
        problems.append(f"early_stopping_metric=retrieval_mrr: needs output_layer=softmax with "
                        f"num_classes=2 (it ranks the pairs labelled 1), got output_layer="
                        f"{v['output_layer']}, num_classes={v['num_classes']}")
    if v["hard_negatives"]:
        wrong = (("in_batch_softmax_weight", v["in_batch_softmax_weight"] == 0),
                 ("gradient_accumulation_steps", v["gradient_accumulation_steps"] > 1),
                 ("bucket_width", v["bucket_width"] > 0))
        needs = [f"{k}={v[k]:g}" for k, bad in wrong if bad]
        if needs:
            problems.append(f"hard_negatives={v['hard_negatives']}: scores each pair against its own hard "
                            f"negatives in one in-batch softmax, so it needs in_batch_softmax_weight > 0, "
                            f"gradient_accumulation_steps=1 and bucket_width=0 (batches laid out by pair); "
                            f"got {', '.join(needs)}")
    if v["token_weighting"] != "none" and POOLED not in _networks(v):
        problems.append(f"token_weighting={v['token_weighting']}: weights the mean of a "
                        f"pooled_embedding encoder, and neither encoder is one")
    problems += _network_problems(v)
    if v["tied_token_embedding_weight"] and not problems:
        hp = Hyperparameters(**v)
        a, b = hp.enc0, hp.enc1
        if a.vocab_size != b.vocab_size or a.token_embedding_dim != b.token_embedding_dim:
            problems.append(
                "tied_token_embedding_weight=True: both encoders must share vocabulary size and token "
                f"embedding dim, got enc0 {a.vocab_size}x{a.token_embedding_dim} vs enc1 "
                f"{b.vocab_size}x{b.token_embedding_dim}")
        for name in TOKENIZER_SETTINGS:  # one table, one tokenizer: enc0's, for text inputs
            mine, theirs = v[f"enc1_{name}"], v[f"enc0_{name}"]
            if mine != ENCODER_SETTINGS[name].default and mine != theirs:
                problems.append(f"enc1_{name}={mine!r}: with tied_token_embedding_weight=True both "
                                f"text sides use enc0's tokenizer; set enc0_{name} instead")
    return problems
