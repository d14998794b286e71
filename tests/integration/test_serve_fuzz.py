"""Property-based fuzzing of ``POST /invocations`` on one real ``container/serve``: whatever the
body -- random JSON, valid requests with bytes flipped, inserted or deleted, deep nesting, integers
longer than Python reads, random bytes -- and whichever content type, the answer is never a 5xx,
every error is ``{"error": ...}`` JSON, no worker dies, and a good request is still answered
afterwards.

Deterministic (``derandomize=True``, no example database) and bounded: :data:`MAX_EXAMPLES`
examples, stopping early once :data:`TIME_BUDGET_S` has passed.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_serve import MIXED, Server, build_model, check_mixed, invoke, ok_json
from test_serve_hardening import worker_pids

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 1000
TIME_BUDGET_S = 30
CONTENT_TYPES = ["application/json", "application/jsonlines", "application/octet-stream",
                 "application/json; infer_max_seqlens=2,3", "application/x-ndjson", None]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from object2vec.artifact import load_artifact

    base = tmp_path_factory.mktemp("opt_ml")
    build_model(base)  # vocabularies 50 (in0) and 30 (in1)
    server = Server(base, tmp_path_factory.mktemp("cwd"), MODEL_SERVER_WORKERS="2")
    try:
        server.wait_ready()
        yield server, load_artifact(base / "model").model
    finally:
        server.stop()


# -- bodies ----------------------------------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
           | st.integers(-10**30, 10**30))
json_values = st.recursive(
    scalars,
    lambda inner: (st.lists(inner, max_size=4)
                   | st.dictionaries(st.sampled_from(["in0", "in1", "instances", "label", "x"])
                                     | st.text(max_size=4), inner, max_size=4)),
    max_leaves=20)
# Mostly valid ids (below both vocabularies) and instances, so that many requests reach the model.
good_ids = st.lists(st.integers(0, 29), min_size=1, max_size=12)
odd_ids = st.lists(st.integers(-2, 60) | st.sampled_from([True, 1.0, "1", None, 2**63, -(2**64)]),
                   max_size=12)
id_lists = st.one_of(good_ids, good_ids, good_ids, odd_ids, json_values)
good_instances = st.one_of(*(st.fixed_dictionaries({k: good_ids for k in keys},
                                                   optional={"label": json_values})
                             for keys in (["in0"], ["in1"], ["in0", "in1"])))
odd_instances = st.fixed_dictionaries({}, optional={"in0": id_lists, "in1": id_lists,
                                                    "label": json_values})
instances = st.one_of(good_instances, good_instances, good_instances, odd_instances)


@st.composite
def valid_bodies(draw) -> bytes:
    """A well-formed request (its values not always valid), as JSON or JSON Lines."""
    items = draw(st.lists(instances, min_size=1, max_size=6))
    shape = draw(st.sampled_from(["wrapped", "bare", "lines"]))
    if shape == "lines":
        return "\n".join(json.dumps(i) for i in items).encode()
    return json.dumps({"instances": items} if shape == "wrapped" else items).encode()


@st.composite
def mutated(draw, bodies) -> bytes:
    """``bodies`` with a few bytes flipped, inserted or deleted."""
    data = bytearray(draw(bodies))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(pos, len(data) - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4)
                                 | st.sampled_from([b"[", b"{", b'"', b"\n", b"\\", b"-", b"\xff",
                                                    b"9" * 20, b"\xef\xbb\xbf"]))
        else:
            del data[pos: pos + draw(st.integers(1, 8))]
    return bytes(data)


@st.composite
def deep_bodies(draw) -> bytes:
    """Arrays or objects nested 50 to 20,000 levels, closed or not, in a body or in one line."""
    depth = draw(st.integers(50, 20_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a": ', "}")]))
    inner = opener * depth + ("1" if opener != "[" else "") + closer * depth * draw(st.booleans())
    if draw(st.booleans()):
        return ('{"instances": [{"in0": [1], "x": ' + inner + "}]}").encode()
    return ('{"in0": [1]}\n{"in1": [2], "label": ' + inner + "}\n").encode()


@st.composite
def long_integer_bodies(draw) -> bytes:
    digits = "-" * draw(st.booleans()) + "1" + "7" * draw(st.integers(4000, 9000))
    where = draw(st.sampled_from(['{"instances": [{"in0": [%s]}]}', '[{"in1": [1, %s]}]',
                                  '{"in0": [1]}\n{"in0": [%s]}', '{"label": %s, "in0": [1]}']))
    return (where % digits).encode()


bodies = st.one_of(
    valid_bodies(),
    valid_bodies(),
    mutated(valid_bodies()),
    json_values.map(lambda v: json.dumps(v).encode()),
    deep_bodies(),
    long_integer_bodies(),
    st.binary(max_size=300),
)


# -- the property ----------------------------------------------------------------------------------


def test_no_body_makes_a_5xx_or_kills_a_worker(served):
    server, model = served
    workers = worker_pids(server, expect=2)
    stop_at = time.monotonic() + TIME_BUDGET_S
    statuses: Counter[int] = Counter()

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=bodies, content_type=st.sampled_from(CONTENT_TYPES))
    def answers_without_fault(body: bytes, content_type: str | None) -> None:
        if time.monotonic() > stop_at:  # the wall-clock bound: later examples pass untried
            return
        status, headers, data = invoke(server, body, content_type)
        statuses[status] += 1
        assert status < 500, (status, data[:500], body[:500], server.output()[-3000:])
        assert headers["content-type"] in ("application/json", "application/jsonlines",
                                           "application/x-ndjson"), headers
        if status != 200:
            assert set(json.loads(data)) == {"error"}, data[:500]

    answers_without_fault()
    assert worker_pids(server) == workers, server.output()[-3000:]
    check_mixed(model, ok_json(invoke(server, MIXED)))
    # The bodies reach both the model and the error paths (a check on the strategies themselves).
    assert statuses[200] > 0 and statuses[400] > 0, statuses
    print(f"statuses: {dict(sorted(statuses.items()))}, {sum(statuses.values())} requests in "
          f"{time.monotonic() - stop_at + TIME_BUDGET_S:.1f} s")
