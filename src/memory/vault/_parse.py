"""Markdown → structured note, with markdown-it-py and its front-matter plugin.

* title: front matter ``title``, else the first heading, else the file name;
* tags: front matter ``tags`` (list or comma/space separated) and inline ``#tags`` in text
  (not in code, not headings);
* headings: every heading's text, in order;
* links: ``[[wiki links]]`` (target before ``|`` or ``#``) and relative links to ``.md`` files,
  normalized against the note's folder — kept for the graph;
* body: the text after the front matter.

Invalid YAML front matter does not stop indexing: the note keeps its body and title and the
parser's message is returned as ``invalid``.

Front matter is hostile input (a ``git pull`` can bring any file, and the watcher parses it in
the chat process), so on top of ``safe_load`` (no Python objects, no code):

* **aliases are refused** (``*name``): a few hundred bytes of nested aliases expand to
  gigabytes once serialized (each level multiplies). Anchors alone are harmless;
* **nesting is bounded** (:data:`MAX_DEPTH` levels), so a deep ``[[[[…`` cannot exhaust the
  stack;
* **any failure of the loader is an invalid note**, not a crash: ``2024-13-45`` (a date that
  does not exist), an integer of 5,000 digits, anything PyYAML raises;
* **the result is plain JSON**: dates and times become ISO 8601 text, ``!!binary`` UTF-8 text
  or ``base64:…``, sets sorted lists, NaN/±inf the strings ``"NaN"``/``"Infinity"``, keys
  text (``1`` → ``"1"``, ``true`` → ``"true"``); lone surrogates (``"\\ud800"``, which
  no database accepts) become U+FFFD. Keys that collide once converted are reported.

A refused front matter leaves the note *indexed without metadata* (body, headings, title from
the first heading), with the reason reported: the text a human wrote stays searchable, its
row is never dropped because of its header, and nothing half-trusted lands in the metadata.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import json
import math
import posixpath
import re
from typing import Any

import yaml
from markdown_it import MarkdownIt
from mdit_py_plugins.front_matter import front_matter_plugin

_md = MarkdownIt("commonmark").use(front_matter_plugin)
_WIKI = re.compile(r"\[\[([^\[\]|#]+)(?:#[^\[\]|]*)?(?:\|[^\[\]]*)?\]\]")
_TAG = re.compile(r"(?<![\w&/#])#([A-Za-z0-9_\-/]*[A-Za-z_\-][A-Za-z0-9_\-/]*)")


@dataclasses.dataclass(frozen=True)
class Parsed:
    title: str
    body: str
    metadata: dict[str, Any]
    tags: tuple[str, ...]
    headings: tuple[str, ...]
    links: tuple[str, ...]
    invalid: str | None = None
    #: Every link as written, for the graph: ``("wiki", target)`` (before ``|``/``#``) or
    #: ``("file", href)``; resolved to knowledge keys by :func:`memory.vault._links.link_targets`.
    refs: tuple[tuple[str, str], ...] = ()


MAX_DEPTH = 32  # nesting levels of front matter: generous for metadata, far from the stack limit
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Loader(yaml.SafeLoader):
    """``safe_load`` without aliases and with bounded nesting (see the module docstring)."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"aliases (*{event.anchor}) are not allowed in front "
                                              "matter: they can expand to gigabytes", event.start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _text(value: str) -> str:
    return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return _text(key)
    plain = _plain(key, [])
    if isinstance(plain, str):
        return plain
    return json.dumps(plain) if isinstance(plain, (bool, type(None), int, float)) else str(plain)  # true, null, 1


def _plain(value: Any, notes: list[str]) -> Any:
    """``value`` as plain JSON data (the loader already bounded the depth)."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return value if not math.isinf(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (_dt.date, _dt.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, bytes):
        try:
            return _text(value.decode("utf-8"))
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            text = _key_text(k)
            if text in out:
                notes.append(f"key {text!r} appears twice once keys are converted to text; the last one is kept")
            out[text] = _plain(v, notes)
        return out
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(v, notes) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, (list, tuple)):
        return [_plain(v, notes) for v in value]
    return _text(str(value))


def _front_matter(raw: str) -> tuple[dict[str, Any], str | None]:
    try:
        data = yaml.load(raw, Loader=_Loader) if raw.strip() else {}  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark else ""
        return {}, f"invalid YAML front matter{where}: {getattr(exc, 'problem', None) or exc}"
    except Exception as exc:  # noqa: BLE001 - a value PyYAML cannot build (2024-13-45, 10**5000, ...)
        return {}, f"invalid YAML front matter: {type(exc).__name__}: {str(exc)[:200]}"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return {}, f"front matter must be a mapping, got {type(data).__name__}"
    notes: list[str] = []
    meta = _plain(data, notes)
    return meta, ("front matter: " + "; ".join(dict.fromkeys(notes))) if notes else None


def _tags_from(meta: dict[str, Any]) -> list[str]:
    raw = meta.get("tags")
    if isinstance(raw, str):
        return [t.strip().lstrip("#") for t in re.split(r"[,\s]+", raw) if t.strip()]
    if isinstance(raw, list):
        return [str(t).strip().lstrip("#") for t in raw if str(t).strip()]
    return []


def parse(text: str, rel_path: str) -> Parsed:
    tokens = _md.parse(text)
    meta: dict[str, Any] = {}
    invalid = None
    body_start = 0
    if tokens and tokens[0].type == "front_matter":
        meta, invalid = _front_matter(tokens[0].content)
        body_start = tokens[0].map[1] if tokens[0].map else 0
    headings: list[str] = []
    tags: list[str] = _tags_from(meta)
    links: list[str] = []
    refs: list[tuple[str, str]] = []
    folder = posixpath.dirname(rel_path)
    in_heading = False
    for tok in tokens:
        if tok.type == "heading_open":
            in_heading = True
            continue
        if tok.type == "heading_close":
            in_heading = False
            continue
        if tok.type != "inline":
            continue
        if in_heading:
            headings.append(tok.content.strip())
        for child in tok.children or ():
            if child.type == "text":
                wiki = [m.group(1).strip() for m in _WIKI.finditer(child.content)]
                links += wiki
                refs += [("wiki", w) for w in wiki]
                if not in_heading:
                    tags += _TAG.findall(child.content)
            elif child.type == "link_open":
                href = str(child.attrGet("href") or "")
                refs.append(("file", href))
                target = href.split("#", 1)[0]
                if target.endswith(".md") and "://" not in target and not target.startswith("/"):
                    links.append(posixpath.normpath(posixpath.join(folder, target)))
    lines = text.splitlines(keepends=True)
    body = "".join(lines[body_start:]).lstrip("\n")
    title = meta.get("title") if isinstance(meta.get("title"), str) and meta.get("title") else None
    if title is None:
        title = headings[0] if headings else posixpath.splitext(posixpath.basename(rel_path))[0]
    return Parsed(title=str(title), body=body, metadata=meta, tags=tuple(dict.fromkeys(tags)),
                  headings=tuple(headings), links=tuple(dict.fromkeys(links)), invalid=invalid,
                  refs=tuple(dict.fromkeys(refs)))


def render(content: str, metadata: dict[str, Any] | None) -> str:
    """File text for ``content`` with ``metadata`` as YAML front matter (none if empty)."""
    body = content if content.endswith("\n") or not content else content + "\n"
    if not metadata:
        return body
    front = yaml.safe_dump(dict(metadata), allow_unicode=True, sort_keys=False, default_flow_style=False)
    return f"---\n{front}---\n{body}"
