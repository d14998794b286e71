"""Wire format of /invocations: content types, Accept, decoding, encoding, error statuses."""

import json
import math

import numpy as np
import pytest

from object2vec.errors import UserError
from object2vec.serving import codec
from object2vec.serving.codec import (
    JSON,
    JSONLINES,
    BadRequest,
    NotAcceptable,
    PayloadTooLarge,
    RequestFormat,
    UnsupportedMediaType,
)
from object2vec.serving.predictor import InvalidInstance, Predictions

# -- Content-Type ----------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["application/json", "Application/JSON", "text/json", None, "",
                                    "application/json; charset=utf-8", "  "])
def test_json_content_types(header):
    assert codec.parse_content_type(header).mime == JSON


@pytest.mark.parametrize("header", codec.JSONLINES_ALIASES)
def test_every_jsonlines_alias(header):
    fmt = codec.parse_content_type(header)
    assert fmt.mime == JSONLINES
    assert fmt.media_type == header
    assert fmt.max_seqlens is None


@pytest.mark.parametrize("header", ["text/csv", "application/x-recordio-protobuf", "text/plain",
                                    "application/jsonlinesx", "application/octet-streamx"])
def test_unsupported_content_type_is_415(header):
    with pytest.raises(UnsupportedMediaType, match="unsupported Content-Type") as err:
        codec.parse_content_type(header)
    assert err.value.status == 415
    assert JSONLINES in str(err.value)


@pytest.mark.parametrize("header", ["application/octet-stream", "Application/Octet-Stream",
                                    "application/octet-stream; infer_max_seqlens=3,4"])
def test_octet_stream_is_read_as_json_and_answered_as_json(header):
    """SageMaker Python SDK v2's default Predictor and many boto3 callers send octet-stream."""
    fmt = codec.parse_content_type(header)
    assert fmt.mime == JSON
    assert fmt.max_seqlens == ((3, 4) if "infer" in header else None)
    json_response = codec.ResponseFormat(JSON, JSON)
    for accept in (None, "*/*", "application/*"):  # never echoed: the answer is JSON, say so
        assert codec.negotiate_accept(accept, fmt) == json_response
    assert codec.negotiate_accept("application/jsonlines", fmt).mime == JSONLINES


def test_non_utf8_charset_is_415():
    with pytest.raises(UnsupportedMediaType, match="charset 'latin-1'") as err:
        codec.parse_content_type("application/json; charset=latin-1")
    assert err.value.status == 415


@pytest.mark.parametrize("header, expected", [
    ("application/json; infer_max_seqlens=10,20", (10, 20)),
    ("application/jsonlines;infer_max_seqlens=1,5000", (1, 5000)),
    ('application/json; infer_max_seqlens="7, 3"', (7, 3)),
    ("application/jsonl; charset=utf-8; INFER_MAX_SEQLENS=4,4", (4, 4)),
])
def test_infer_max_seqlens(header, expected):
    assert codec.parse_content_type(header).max_seqlens == expected


@pytest.mark.parametrize("value", ["", "10", "0,5", "5,0", "5001,1", "1,5001", "a,b", "1,2,3",
                                   "1.5,2", "-1,2", ","])
def test_bad_infer_max_seqlens_is_400(value):
    with pytest.raises(BadRequest, match="infer_max_seqlens=.* is invalid: expected two integers "
                                         "in 1..5000") as err:
        codec.parse_content_type(f"application/json; infer_max_seqlens={value}")
    assert err.value.status == 400


# -- Accept ----------------------------------------------------------------------------------------

JSON_REQ = RequestFormat(JSON, JSON)
JSONL_REQ = RequestFormat(JSONLINES, "application/x-jsonlines")


@pytest.mark.parametrize("accept", [None, "", "*/*", "application/*", "*/*; q=0.8",
                                    "text/html, */*"])
def test_missing_or_wildcard_accept_follows_request(accept):
    assert codec.negotiate_accept(accept, JSON_REQ) == codec.ResponseFormat(JSON, JSON)
    assert codec.negotiate_accept(accept, JSONL_REQ) == codec.ResponseFormat(
        JSONLINES, "application/x-jsonlines")


@pytest.mark.parametrize("accept, mime, content_type", [
    ("application/json", JSON, "application/json"),
    ("application/jsonlines", JSONLINES, "application/jsonlines"),
    ("application/jsonl", JSONLINES, "application/jsonl"),
    ("text/html, application/jsonlines, application/json", JSONLINES, "application/jsonlines"),
    ("application/json; q=0.5, application/jsonlines", JSONLINES, "application/jsonlines"),
    ("application/jsonlines; q=0, application/json", JSON, "application/json"),
    ("Application/JSON", JSON, "application/json"),
    ("text/csv, application/json;q=0.1", JSON, "application/json"),
    ("application/jsonlines; charset=utf-8", JSONLINES, "application/jsonlines"),
    ('text/html;level="1,2", application/jsonl;q=0.9', JSONLINES, "application/jsonl"),
])
def test_accept_negotiation(accept, mime, content_type):
    assert codec.negotiate_accept(accept, JSON_REQ) == codec.ResponseFormat(mime, content_type)


@pytest.mark.parametrize("accept", ["text/csv", "text/html, application/xml",
                                    "application/json;q=0"])
def test_unsupported_accept_is_406(accept):
    with pytest.raises(NotAcceptable, match="unsupported Accept") as err:
        codec.negotiate_accept(accept, JSON_REQ)
    assert err.value.status == 406


# -- decoding --------------------------------------------------------------------------------------


def _json(body: str):
    return codec.decode(body.encode(), JSON_REQ)


def _jsonl(body: str):
    return codec.decode(body.encode(), JSONL_REQ)


def test_decode_instances_wrapper_and_bare_list():
    instances = [{"in0": [1, 2], "in1": [3]}, {"in0": [4], "label": 1}]
    assert _json(json.dumps({"instances": instances})).instances == instances
    assert _json(json.dumps(instances)).instances == instances
    assert _json(json.dumps(instances)).lines is None


def test_decode_accepts_byte_order_mark():
    assert codec.decode("\ufeff[{\"in0\": [1]}]".encode(), JSON_REQ).instances == [{"in0": [1]}]


@pytest.mark.parametrize("body, message", [
    ("", "request body is empty"),
    ("{\"instances\": [", "not valid JSON: Expecting value at line 1 column 16"),
    ("{\"in0\": [1]}\n{\"in0\": [2]}", "Extra data .* send Content-Type: application/jsonlines"),
    ("{\"in0\": [1], \"in1\": [2]}", "got an object with keys \"in0\", \"in1\""),
    ("{\"instances\": {\"in0\": [1]}}", "\"instances\" must be an array of instances, got object"),
    ("42", "list of instances, got number"),
    ("\"text\"", "list of instances, got string"),
    ("[]", "holds no instances"),
    ("{\"instances\": []}", "holds no instances"),
])
def test_bad_json_bodies_are_400(body, message):
    with pytest.raises(BadRequest, match=message) as err:
        _json(body)
    assert err.value.status == 400


def test_non_utf8_body_is_400():
    with pytest.raises(BadRequest, match="not UTF-8 text \\(byte 2\\)"):
        codec.decode(b"[{\xff\xfe", JSON_REQ)


def test_decode_jsonlines_skips_blank_lines_and_keeps_line_numbers():
    decoded = _jsonl('{"in0": [1]}\r\n\n  \n{"in1": [2], "label": 0}\n{"in0": [3], "in1": [4]}\n')
    assert decoded.instances == [{"in0": [1]}, {"in1": [2], "label": 0}, {"in0": [3], "in1": [4]}]
    assert decoded.lines == [1, 4, 5]
    assert decoded.where(1) == "instance 1 at line 4"
    assert codec.Decoded([{}]).where(0) == "instance 0"


def test_jsonlines_error_names_the_line():
    with pytest.raises(BadRequest, match="line 3 is not valid JSON: Expecting ',' delimiter at "
                                         "column 11") as err:
        _jsonl('{"in0": [1]}\n{"in0": [2]}\n{"in0": [3}\n')
    assert err.value.status == 400


def test_integer_longer_than_python_reads_is_400():
    """Python refuses to read integers of more than 4300 digits (a ValueError, not a JSON error)."""
    huge = "9" * 5000
    with pytest.raises(BadRequest, match="request body is not valid JSON: an integer has more "
                                         "than 4300 digits") as err:
        _json(f'[{{"in0": [{huge}]}}]')
    assert err.value.status == 400
    with pytest.raises(BadRequest, match="^line 3 is not valid JSON: an integer has more than "
                                         "4300 digits"):
        _jsonl(f'{{"in0": [1]}}\n\n{{"in0": [-{huge}]}}\n')
    assert _json(f'[{{"in0": [{"9" * 4000}]}}]').instances == [{"in0": [int("9" * 4000)]}]


@pytest.mark.parametrize("depth", [1000, 5000, 200_000])
def test_deep_nesting_is_400(depth):
    """Too deep for Python's json (a RecursionError, not a JSON error): a 400."""
    nested = "[" * depth + "]" * depth
    with pytest.raises(BadRequest, match=f"^request body is nested too deeply: more than "
                                         f"{codec.MAX_NESTING} levels") as err:
        _json(nested)
    assert err.value.status == 400
    with pytest.raises(BadRequest, match=f"^line 2 is nested too deeply: more than "
                                         f"{codec.MAX_NESTING} levels"):
        _jsonl(f'{{"in0": [1]}}\n{{"in0": [1], "x": {nested}}}\n{{"in0": [2]}}')
    with pytest.raises(BadRequest, match="nested too deeply"):
        _json('{"instances": [{"in0": [1], "x": ' + "{\"a\": " * depth + "1" + "}" * depth + "}]}")


def test_nesting_limit_is_exact():
    """Up to MAX_NESTING levels are read; one more is refused, though json itself could read it."""
    def body(levels):  # an instance inside {"instances": [...]}: 3 levels, then the rest in "x"
        return '{"instances": [{"in0": [1], "x": ' + "[" * (levels - 3) + "]" * (levels - 3) + "}]}"

    assert _json(body(codec.MAX_NESTING)).instances[0]["in0"] == [1]
    with pytest.raises(BadRequest, match=f"^request body is nested too deeply: more than "
                                         f"{codec.MAX_NESTING} levels"):
        _json(body(codec.MAX_NESTING + 1))
    line = "[" * codec.MAX_NESTING + "]" * codec.MAX_NESTING
    assert len(_jsonl(line + "\n").instances) == 1
    with pytest.raises(BadRequest, match="^line 2 is nested too deeply"):
        _jsonl(f"{line}\n[{line}]")


@pytest.mark.parametrize("body", ["", "\n\n", "  \r\n"])
def test_empty_jsonlines_is_400(body):
    with pytest.raises(BadRequest, match="holds no instances"):
        _jsonl(body)


# -- encoding --------------------------------------------------------------------------------------

JSON_RESP = codec.ResponseFormat(JSON, JSON)
JSONL_RESP = codec.ResponseFormat(JSONLINES, JSONLINES)


def _f32(values):
    return np.asarray(values, dtype=np.float32)


def _groups(preds):
    """Per-instance ``{key: row}`` -> one Predictions per key and length, as the predictor answers."""
    rows = {}
    for position, pred in enumerate(preds):
        (key, row), = pred.items()
        rows.setdefault((key, len(row)), []).append((position, row))
    return [Predictions(key, np.array([p for p, _ in group], dtype=np.int64),
                        np.stack([r for _, r in group]).astype(np.float32))
            for (key, _), group in rows.items()]


def _encode(preds, response):
    return codec.encode(_groups(preds), response)


def test_encode_json_and_jsonlines_exact_text():
    preds = [{"scores": _f32([0.25, 0.75])}, {"embeddings": _f32([1.0, -2.5, 1e-5])}]
    assert _encode(preds, JSON_RESP) == (
        b'{"predictions":[{"scores":[0.25,0.75]},{"embeddings":[1.0,-2.5,0.00001]}]}')
    assert _encode(preds, JSONL_RESP) == (
        b'{"scores":[0.25,0.75]}\n{"embeddings":[1.0,-2.5,0.00001]}')
    assert codec.encode([], JSON_RESP) == b'{"predictions":[]}'


@pytest.mark.parametrize("dim, count", [(3, 2), (300, 40), (2, 5000), (1, 200)])
def test_encode_round_trips_float32_exactly_and_keeps_order(dim, count):
    rng = np.random.default_rng(dim)
    scale = 10.0 ** rng.integers(-6, 6, (count, 1))
    rows = (rng.standard_normal((count, dim)) * scale).astype(np.float32)
    keys = ["scores" if i % 3 else "embeddings" for i in range(count)]
    preds = [{k: r} for k, r in zip(keys, rows)]
    decoded = json.loads(_encode(preds, JSON_RESP))["predictions"]
    assert [list(p) for p in decoded] == [[k] for k in keys]
    back = np.array([next(iter(p.values())) for p in decoded], dtype=np.float32)
    assert np.array_equal(back, rows)
    lines = _encode(preds, JSONL_RESP).split(b"\n")
    assert len(lines) == count
    assert [json.loads(line) for line in lines] == decoded


def _edge_values():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    specials = [0.0, -0.0, 1.0, -1.0, 0.5, 0.1, 2.0, 100.0, 1e-4, 9.9999e-5, 1e-5, 123456789.0, 1e8,
                1e9, 999999999.0, 1e10, 1.5e-45, 3.4028235e38, -3.4028235e38, 1.17549435e-38,
                16777216.0]
    values = np.concatenate([
        rng.standard_normal(50_000).astype(np.float32),
        (rng.standard_normal(50_000) * 10.0 ** rng.integers(-44, 38, 50_000)).astype(np.float32),
        rng.integers(-2**24, 2**24, 5_000).astype(np.float32),
        np.frombuffer(bits.tobytes(), dtype=np.float32),
        _f32(specials)])
    return values[np.isfinite(values)]


def _number_texts(values):
    """How the encoder writes each float32 of ``values`` (one embeddings row)."""
    body = codec.encode([Predictions("embeddings", np.array([0]), _f32(values)[None, :])],
                        JSONL_RESP)
    assert body.startswith(b'{"embeddings":[') and body.endswith(b"]}")
    return body[len(b'{"embeddings":['):-2].decode().split(",")


def test_a_matrix_and_one_long_row_give_the_same_text():
    """One matrix or one row at a time: the same text for every number."""
    values = _edge_values()
    width = 100
    matrix = values[: values.size // width * width].reshape(-1, width)
    whole = codec.encode([Predictions("embeddings", np.arange(len(matrix)), matrix)], JSONL_RESP)
    texts = [t for line in whole.split(b"\n")
             for t in line[len(b'{"embeddings":['):-2].decode().split(",")]
    assert texts == _number_texts(matrix.ravel())


def test_formatting_is_full_float32_precision():
    values = _edge_values()
    texts = _number_texts(values)
    assert np.array_equal(np.array([float(t) for t in texts], dtype=np.float32), values)
    digits = [t.lstrip("-").split("e")[0].replace(".", "").strip("0") for t in texts]
    assert max(map(len, digits)) == 9
    # the shortest text that reads back as the same float32: one digit less never does
    sample = values[:: 20]
    for value, text, significant in zip(sample.tolist(), texts[:: 20], digits[:: 20]):
        if len(significant) > 1:  # ".{n}e": n + 1 significant digits
            assert np.float32(float(f"{value:.{len(significant) - 2}e}")) != value, text
    assert _number_texts([0.6533935070037842, 3.0, -0.0]) == ["0.6533935", "3.0", "-0.0"]


def test_non_finite_values_are_written_as_python_json_does():
    preds = [{"embeddings": _f32([math.nan, math.inf, -math.inf] + [0.5] * 200)}]
    text = _encode(preds, JSON_RESP).decode()
    assert text.startswith('{"predictions":[{"embeddings":[NaN,Infinity,-Infinity,0.5,0.5')
    assert json.loads(text)["predictions"][0]["embeddings"][3:] == [0.5] * 200


def test_non_finite_rows_among_finite_ones_in_json_lines():
    preds = [{"scores": _f32([0.5, 1.0])}, {"scores": _f32([math.nan, 2.0])},
             {"embeddings": _f32([-math.inf, 0.25, 3.0])}]
    assert _encode(preds, JSONL_RESP) == (b'{"scores":[0.5,1.0]}\n{"scores":[NaN,2.0]}\n'
                                          b'{"embeddings":[-Infinity,0.25,3.0]}')


def test_every_error_carries_its_status():
    classes = (BadRequest, NotAcceptable, codec.RequestTimeout, PayloadTooLarge,
               UnsupportedMediaType)
    assert [c.status for c in classes] == [400, 406, 408, 413, 415]
    assert all(issubclass(c, codec.RequestError) for c in (BadRequest, PayloadTooLarge))
    # one status-carrying base: every user error is a 400 unless its class says otherwise
    assert issubclass(codec.RequestError, UserError) and issubclass(InvalidInstance, UserError)
    assert UserError.status == codec.RequestError.status == InvalidInstance.status == 400
