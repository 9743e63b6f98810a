"""tasks.json bytes are what JavaScript's JSON.stringify(doc, null, 2) writes."""

from __future__ import annotations

import json
import shutil
import subprocess

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.records import StoredEvent
from eventstore.jsonfmt import dumps, loads, needs_js_numbers
from projections.backlog import TasksProjection
from support import TASKS_FILES

NODE = shutil.which("node")
# Node re-serializes each line it is given, as the PRP pipeline does when it saves.
STRINGIFY = "require('readline').createInterface({input: process.stdin}).on('line', l => " \
            "process.stdout.write(JSON.stringify(JSON.stringify(JSON.parse(l), null, 2)) + '\\n'))"

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e-6, 1.234e-6, -9.99e-6, 1.5e20, 1e21, 2.0**53 + 2, 0.1, -0.0]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",))),
)
keys = st.one_of(st.text(max_size=8), st.sampled_from(["0", "1", "10", "007", "4294967295", "-1"]))
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=25)


def render(text: str) -> bytes:
    """The real path: import the text as a backlog document's extra field, fold, render."""
    doc = {"backlog": [], "extra": json.loads(text)}
    state = TasksProjection().fold(TasksProjection().initial(), StoredEvent(
        1, "s", 1, "BacklogImported", orjson.loads(orjson.dumps({"backlog": doc, "source": "", "sha256": ""})),
        {}, "", "", 1))
    rendered = TasksProjection().render(state)
    assert rendered is not None
    # Same through a checkpoint: dump the state, load it back, render again.
    reloaded = TasksProjection().load_state(TasksProjection().dump_state(state))
    assert TasksProjection().render(reloaded) == rendered
    return rendered


def node_stringify(texts: list[str]) -> list[bytes]:
    assert NODE is not None
    out = subprocess.run([NODE, "-e", STRINGIFY], input="\n".join(texts) + "\n", capture_output=True,
                         text=True, check=True, timeout=60)
    return [json.loads(line).encode() for line in out.stdout.split("\n") if line]


@pytest.mark.skipif(NODE is None, reason="node is not installed: no JavaScript to compare against")
@settings(max_examples=30, deadline=None)
@given(st.lists(documents, min_size=1, max_size=20))
def test_matches_node_json_stringify_on_hostile_documents(docs: list[object]) -> None:
    """Unicode, control characters, escapes, nesting, empty containers, integral and
    fractional floats: byte-identical to node's JSON.stringify(JSON.parse(text), null, 2)."""
    texts = [json.dumps({"backlog": [], "extra": doc}, ensure_ascii=True) for doc in docs]
    expected = node_stringify(texts)
    assert [render(json.dumps(doc)) for doc in docs] == expected


@pytest.mark.skipif(NODE is None, reason="node is not installed: no JavaScript to compare against")
def test_matches_node_on_every_real_file() -> None:
    texts = [json.dumps(json.loads(p.read_bytes())) for p in TASKS_FILES]
    assert [dumps(loads(t)) for t in texts] == node_stringify(texts)


@pytest.mark.parametrize(("text", "written"), [
    (b'{"a": 2.0}', b'{\n  "a": 2\n}'),
    (b'{"a": -0.0}', b'{\n  "a": 0\n}'),
    (b'{"a": 1.5, "b": []}', b'{\n  "a": 1.5,\n  "b": []\n}'),
    (b'{"a": {}, "b": "\\u00e9\\u0001"}', '{\n  "a": {},\n  "b": "é\\u0001"\n}'.encode()),
    (b'{"b": 1, "10": 2, "2": 3}', b'{\n  "2": 3,\n  "10": 2,\n  "b": 1\n}'),
    (b'{"a": 1.5e20}', b'{\n  "a": 150000000000000000000\n}'),
])
def test_numbers_and_strings_as_javascript_writes_them(text: bytes, written: bytes) -> None:
    """JavaScript has no integral floats (2.0 is written 2); raw UTF-8; \\u00XX escapes."""
    doc = loads(text)
    assert dumps(doc, js_numbers=needs_js_numbers(doc)) == written


def test_no_trailing_newline() -> None:
    assert not dumps({"backlog": []}).endswith(b"\n")


@given(documents)
@settings(max_examples=300, deadline=None)
def test_normalize_document_is_normalize_and_needs_js_numbers_in_one_walk(doc: object) -> None:
    from eventstore.jsonfmt import needs_js_numbers, normalize, normalize_document  # noqa: PLC0415

    once, needs = normalize_document(orjson.loads(orjson.dumps(doc)))
    twice = normalize(orjson.loads(orjson.dumps(doc)))
    assert orjson.dumps(once) == orjson.dumps(twice)
    assert needs == needs_js_numbers(twice)
