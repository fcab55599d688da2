"""A note's links as knowledge keys, for the graph's ``links_to`` edges: a pure function.

The parser keeps every link as written (:attr:`Parsed.refs`); this resolves them against the
note's folder and the notes that exist, the way a reader of the vault would:

* ``[[facts/coffee]]``, ``[[facts/coffee|alias]]``, ``[[facts/coffee#heading]]``: a path from the
  knowledge folder (``knowledge/`` and ``.md`` may be written or not); ``[[./x]]``/``[[../x]]``
  from the note's folder;
* ``[[Coffee]]`` (a bare name): the note of that name in the same folder, else the one note of
  that name anywhere (each first as written, then ignoring case); a name that matches nothing or
  several notes elsewhere resolves to the same folder (a link to a note not written yet, which
  becomes an edge to it once it is);
* ``[text](../facts/coffee.md)`` (percent-encoding decoded, ``#`` and ``?`` parts dropped): from
  the note's folder;
* ignored: URLs, absolute paths, links leaving the vault or into ``md/`` (configs are not graph
  items), attachments and images (a file extension other than ``.md``), a note linking itself.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from collections.abc import Collection, Sequence

from ._layout import KNOWLEDGE_DIR, MAX_KEY_CHARS, SUFFIX

_ATTACHMENT = re.compile(r"\.[A-Za-z0-9]{1,5}$")  # x.png, x.pdf: not a note (a note name may hold dots)


def _valid_key(key: str) -> bool:
    parts = key.split("/")
    return len(parts) >= 2 and len(key) <= MAX_KEY_CHARS and all(p and p not in (".", "..") and not p.startswith(".")
                                                                  for p in parts)


def _strip_md(target: str) -> str | None:
    """The target without ``.md``; None for an attachment or something that is no note."""
    if target.lower().endswith(SUFFIX):
        return target[: -len(SUFFIX)]
    return None if _ATTACHMENT.search(target) else target


def _from_folder(folder: str, target: str) -> str | None:
    """A path relative to the note's folder (vault-relative), as a knowledge key or None."""
    path = posixpath.normpath(posixpath.join(folder, target))
    prefix = KNOWLEDGE_DIR + "/"
    return path[len(prefix):] if path.startswith(prefix) else None


def _by_name(name: str, category_folder: str, keys: Collection[str], by_name: dict[str, list[str]]) -> str:
    local = f"{category_folder}/{name}" if category_folder else name
    if local in keys:
        return local
    folded = name.casefold()
    same_folder = [k for k in by_name.get(folded, ()) if posixpath.dirname(k) == category_folder]
    if len(same_folder) == 1:
        return same_folder[0]
    exact = [k for k in by_name.get(folded, ()) if posixpath.basename(k) == name]
    if len(exact) == 1:
        return exact[0]
    anywhere = by_name.get(folded, [])
    if len(anywhere) == 1:
        return anywhere[0]
    return local


def link_targets(rel: str, refs: Sequence[tuple[str, str]], keys: Collection[str]) -> tuple[str, ...]:
    """The knowledge keys the note at ``rel`` (vault-relative) links to, first occurrence first.

    ``keys``: the knowledge keys that exist (for bare names and case); a link to a key not in it
    is kept when it is a well-formed key (its note may come later).
    """
    folder = posixpath.dirname(rel)
    own = rel[len(KNOWLEDGE_DIR) + 1: -len(SUFFIX)] if rel.startswith(KNOWLEDGE_DIR + "/") else None
    category_folder = folder[len(KNOWLEDGE_DIR) + 1:] if folder.startswith(KNOWLEDGE_DIR + "/") else ""
    by_name: dict[str, list[str]] = {}
    folded_keys: dict[str, list[str]] = {}
    out: dict[str, None] = {}
    for form, raw in refs:
        target = raw.strip()
        if not target or "://" in target or target.startswith(("/", "mailto:", "#")):
            continue
        key: str | None
        if form == "file":
            target = urllib.parse.unquote(target.split("#", 1)[0].split("?", 1)[0])
            if not target.lower().endswith(SUFFIX):
                continue
            key = _from_folder(folder, target)
            key = key[: -len(SUFFIX)] if key is not None else None
        else:
            stripped = _strip_md(target)
            if stripped is None:
                continue
            if stripped.startswith(("./", "../")):
                key = _from_folder(folder, stripped)
            elif "/" in stripped:
                path = posixpath.normpath(stripped)
                if path == ".." or path.startswith(("../", "md/")):
                    key = None  # outside the vault, or a config note (not a graph item)
                else:
                    key = path[len(KNOWLEDGE_DIR) + 1:] if path.startswith(KNOWLEDGE_DIR + "/") else path
            else:
                if not by_name:
                    for k in keys:
                        by_name.setdefault(posixpath.basename(k).casefold(), []).append(k)
                key = _by_name(stripped, category_folder, keys, by_name)
            if key is not None and key not in keys:  # the right note, written in another case
                if not folded_keys:
                    for k in keys:
                        folded_keys.setdefault(k.casefold(), []).append(k)
                same = folded_keys.get(key.casefold(), [])
                key = same[0] if len(same) == 1 else key
        if key is not None and key != own and _valid_key(key):
            out.setdefault(key, None)
    return tuple(out)


def knowledge_keys(paths: Collection[str]) -> set[str]:
    """The knowledge keys of vault-relative note paths (others skipped)."""
    prefix = KNOWLEDGE_DIR + "/"
    return {p[len(prefix): -len(SUFFIX)] for p in paths if p.startswith(prefix) and p.endswith(SUFFIX)}
