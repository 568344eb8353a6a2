"""Reading Gemma4Deployment files for `plan` and `render`, within limits a hostile file cannot stretch.

A file is read up to MAX_INPUT_BYTES (so `/dev/zero` or an endless pipe is refused, not read forever) and
parsed by libyaml with a safe constructor that also refuses what YAML allows but Kubernetes does not
(duplicate keys), what would grow without bound (aliases that expand a small file into billions of values,
nesting, numbers too long to convert, more documents than a file should hold) and reads timestamps as their
text, as kubectl sends them. Each refusal is an InputError with one message naming the file and the problem.
"""

from __future__ import annotations

import codecs
import os
import sys
from typing import Any

import yaml
from pydantic import ValidationError

from gemma4_operator.api import API_VERSION, KIND, Gemma4Deployment, validation_problems
from gemma4_operator.api.wire import MAX_DEPTH, parse_object
from gemma4_operator.render.children import YAML_LOADER

MAX_INPUT_BYTES = 1 << 20  # a Gemma4Deployment is about 1 KiB
MAX_DOCUMENTS = 500  # per file: planning takes milliseconds each (8962 tiny ones took 47 s on a loaded machine)
MAX_EXPANDED_VALUES = 100_000  # per document, aliases expanded; a Gemma4Deployment has a few hundred


class InputError(Exception):
    """A file that cannot be read as Gemma4Deployments; the message is for the user."""


class _LimitError(yaml.YAMLError):
    """The loader refused a document that is valid YAML (a limit, a duplicate key): where, and why."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it past MAX_EXPANDED_VALUES, that nests deeper than MAX_DEPTH
    or whose alias refers to a node that contains it. Iterative and linear in the distinct nodes: an alias
    is a shared node, counted once per reference by its memoized size, never expanded."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            height[key] = 1 + max((height[id(c)] for c in children), default=0)
            if size[key] > MAX_EXPANDED_VALUES:
                raise _LimitError(f"more than {MAX_EXPANDED_VALUES} values, counting each alias as the values "
                                  "it repeats (a YAML alias bomb, or far more than a Gemma4Deployment holds)",
                                  node.start_mark)
            if height[key] > MAX_DEPTH:
                raise _LimitError(f"nested more than {MAX_DEPTH} levels deep", node.start_mark)
        elif key in on_path:
            raise _LimitError("an alias refers to a node that contains it (a recursive structure)", node.start_mark)
        elif key not in size:
            on_path.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in _children(node) if id(c) not in size)


class BoundedLoader(YAML_LOADER):  # type: ignore[misc, valid-type]  # libyaml's safe loader when present
    """The safe loader, with the checks above."""

    def construct_document(self, node: yaml.Node) -> Any:
        check_expansion(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                first = seen.setdefault((key.tag, key.value), key)
                if first is not key:
                    raise _LimitError(f"duplicate key {key.value[:60]!r} (first at line {first.start_mark.line + 1})",
                                      key.start_mark)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)  # type: ignore[no-any-return]
        except ValueError as e:  # Python refuses to convert more than 4300 digits
            raise _LimitError(f"a number with {len(node.value)} digits is too long", node.start_mark) from e


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)
BoundedLoader.add_constructor("tag:yaml.org,2002:timestamp", BoundedLoader.construct_yaml_str)


def _read_file(path: str) -> bytes:
    """At most MAX_INPUT_BYTES + 1 bytes. Opened without blocking, so that a named pipe nobody writes to reads
    as empty instead of waiting forever; reads then block as usual (a pipe with a writer is read to its end)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        return f.read(MAX_INPUT_BYTES + 1)


def _read_bytes(path: str, source: str) -> bytes:
    try:
        if path == "-":
            stream = getattr(sys.stdin, "buffer", None)
            if stream is None:  # a text-mode stdin (tests): its text, as UTF-8
                return sys.stdin.read(MAX_INPUT_BYTES + 1).encode("utf-8", "surrogateescape")
            data: bytes = stream.read(MAX_INPUT_BYTES + 1)
        else:
            data = _read_file(path)
    except OSError as e:
        raise InputError(f"{source}: cannot read: {e.strerror or e}") from e
    except ValueError as e:  # a NUL in the path (in-process callers; argv cannot hold one)
        raise InputError(f"{source!r}: cannot read: {e}") from e
    except UnicodeDecodeError as e:  # a text-mode stdin without a byte buffer
        raise InputError(f"{source}: not a text file ({e.reason} at byte {e.start}); "
                         f"expected YAML with {KIND} documents") from e
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"{source}: larger than {MAX_INPUT_BYTES >> 20} MiB, the limit for a file of {KIND}s "
                         "(each is about 1 KiB); split it")
    return data


def read_text(path: str) -> str:
    """The file ('-': stdin) as UTF-8 text; InputError for what cannot be read, is too large or is not text."""
    source = "stdin" if path == "-" else path
    data = _read_bytes(path, source)
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "UTF-32" if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)) else "UTF-16"
        raise InputError(f"{source}: not UTF-8 text ({encoding}, by its byte order mark): save it as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{source}: not a text file (byte 0x{data[e.start]:02x} at offset {e.start} is not "
                         f"UTF-8); expected YAML with {KIND} documents") from e
    if "\x00" in text:
        raise InputError(f"{source}: not a text file (NUL byte at offset {text.index(chr(0))}); "
                         f"expected YAML with {KIND} documents")
    return text


def _documents(text: str, source: str) -> list[Any]:
    try:
        return [d for d in yaml.load_all(text, Loader=BoundedLoader) if d is not None]
    except RecursionError as e:
        raise InputError(f"{source}: invalid YAML: nested too deeply") from e
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (no mark: a position)
        line = text.count("\n", 0, e.position) + 1
        column = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        raise InputError(f"{source}: invalid YAML at line {line}, column {column}: {e.reason} "
                         f"(#x{e.character:04x})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise InputError(f"{source}: {'refused' if isinstance(e, _LimitError) else 'invalid'} YAML{where}: "
                         f"{problem}") from e


_YAML_TYPES = {list: "list", str: "string", int: "integer", float: "number", bool: "boolean", bytes: "binary"}


def _deployment(doc: Any, source: str) -> Gemma4Deployment:
    if not isinstance(doc, dict):
        found = _YAML_TYPES.get(type(doc), type(doc).__name__)
        raise InputError(f"{source}: expected a {KIND} mapping (apiVersion: {API_VERSION}, kind: {KIND}, "
                         f"metadata, spec), found a YAML {found}")
    if doc.get("kind") != KIND:
        raise InputError(f"{source}: expected kind {KIND} ({API_VERSION}), found {doc.get('kind')!r:.80}")
    try:
        return parse_object(doc)
    except ValidationError as e:
        lines = [f"{source}: not a valid {KIND}:", *(f"  {line}" for line in validation_problems(e))]
        raise InputError("\n".join(lines)) from e
    except TypeError as e:  # json.dumps: a mapping key JSON cannot hold
        raise InputError(f"{source}: not a {KIND}: a mapping key is not a string, number or boolean "
                         "(binary data?)") from e


def load_deployments(path: str) -> list[Gemma4Deployment]:
    """Every Gemma4Deployment document in a YAML file ('-' for stdin)."""
    source = "stdin" if path == "-" else path
    documents = _documents(read_text(path), source)
    if not documents:
        raise InputError(f"{source}: no {KIND} found: the file is empty or only has comments")
    if len(documents) > MAX_DOCUMENTS:
        raise InputError(f"{source}: {len(documents)} documents, more than the {MAX_DOCUMENTS} a file may hold; "
                         "split it")
    many = len(documents) > 1
    return [_deployment(doc, f"{source} (document {i + 1})" if many else source) for i, doc in enumerate(documents)]
