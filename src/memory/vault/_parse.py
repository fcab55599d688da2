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
"""

from __future__ import annotations

import dataclasses
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


def _front_matter(raw: str) -> tuple[dict[str, Any], str | None]:
    try:
        data = yaml.safe_load(raw) if raw.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark else ""
        return {}, f"invalid YAML front matter{where}: {getattr(exc, 'problem', None) or exc}"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return {}, f"front matter must be a mapping, got {type(data).__name__}"
    return {str(k): v for k, v in data.items()}, None


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
                links += [m.group(1).strip() for m in _WIKI.finditer(child.content)]
                if not in_heading:
                    tags += _TAG.findall(child.content)
            elif child.type == "link_open":
                href = str(child.attrGet("href") or "")
                target = href.split("#", 1)[0]
                if target.endswith(".md") and "://" not in target and not target.startswith("/"):
                    links.append(posixpath.normpath(posixpath.join(folder, target)))
    lines = text.splitlines(keepends=True)
    body = "".join(lines[body_start:]).lstrip("\n")
    title = meta.get("title") if isinstance(meta.get("title"), str) and meta.get("title") else None
    if title is None:
        title = headings[0] if headings else posixpath.splitext(posixpath.basename(rel_path))[0]
    return Parsed(title=str(title), body=body, metadata=meta, tags=tuple(dict.fromkeys(tags)),
                  headings=tuple(headings), links=tuple(dict.fromkeys(links)), invalid=invalid)


def render(content: str, metadata: dict[str, Any] | None) -> str:
    """File text for ``content`` with ``metadata`` as YAML front matter (none if empty)."""
    body = content if content.endswith("\n") or not content else content + "\n"
    if not metadata:
        return body
    front = yaml.safe_dump(dict(metadata), allow_unicode=True, sort_keys=False, default_flow_style=False)
    return f"---\n{front}---\n{body}"
