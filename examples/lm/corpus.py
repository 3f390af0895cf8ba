"""The text the students are trained and scored on: English prose from the Python documentation.

Two sources, both the Python Software Foundation's documentation (PSF License Agreement; the code examples
in it also under the Zero-Clause BSD licence since Python 3.8):

- `docs`: the HTML documentation of Debian's `python3-doc` package (/usr/share/doc/python3.X/html), one
  document per page, the prose of each page (paragraphs, list items, definitions, headings; code blocks,
  navigation and tables left out), several MB. Used by the full run.
- `topics`: `pydoc_data.topics`, the language-reference topics that `help()` shows, shipped with every
  CPython (about 0.5 MB): always there, so the reduced mode (CI) needs no install.

Documents are split into train and held-out *documents* (no page is in both), tokenized with the teacher's
tokenizer, joined with <|endoftext|> (SmolLM2's document separator, id 0) and cut into sequences of a fixed length.
"""

from __future__ import annotations

import glob
import html.parser
import random
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

DOCS_GLOB = "/usr/share/doc/python3*/html"
# Pages that are indexes, navigation or licence text, not prose.
SKIP_PAGES = {"genindex", "py", "search", "contents", "glossary", "copyright", "license", "bugs", "about"}
PROSE_TAGS = {"p", "li", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "caption"}
SKIP_TAGS = {"pre", "script", "style", "table", "nav"}  # code blocks and tables are not prose


class _Prose(html.parser.HTMLParser):
    """The text of the prose elements inside the page's main body (`<div role="main">`)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._depth = 0  # depth inside the main div (0: outside)
        self._skip = 0  # depth inside a skipped element
        self._current: list[str] | None = None
        self._open = 0  # prose elements open (a <p> inside an <li> belongs to it)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._depth == 0:
            if tag == "div" and ("role", "main") in attrs:
                self._depth = 1
            return
        if tag == "div":
            self._depth += 1
        if tag in SKIP_TAGS or (tag == "a" and ("class", "headerlink") in attrs):
            self._skip += 1
        elif tag in PROSE_TAGS and not self._skip:
            self._open += 1
            if self._current is None:
                self._current = []

    def handle_endtag(self, tag: str) -> None:
        if self._depth == 0:
            return
        if tag == "div":
            self._depth -= 1
        if tag in SKIP_TAGS or (tag == "a" and self._skip):
            self._skip = max(0, self._skip - 1)
        elif tag in PROSE_TAGS and self._open:
            self._open -= 1
            if self._open == 0 and self._current is not None:
                text = " ".join("".join(self._current).split())
                if text:
                    self.blocks.append(text)
                self._current = None

    def handle_data(self, data: str) -> None:
        if self._depth and not self._skip and self._current is not None:
            self._current.append(data)


def docs_root() -> Path | None:
    """The newest python3-doc HTML folder on this machine, or None."""
    roots = sorted({Path(p).resolve() for p in glob.glob(DOCS_GLOB)})  # python3.11-venv/ links to python3.11/
    return roots[-1] if roots else None


def docs_documents(root: Path) -> list[tuple[str, str]]:
    """(page, prose) for every HTML page of the documentation, in sorted path order."""
    documents = []
    for path in sorted(root.rglob("*.html")):
        rel = path.relative_to(root)
        if rel.parts[0].startswith("_") or rel.stem.split("-")[0] in SKIP_PAGES:
            continue
        parser = _Prose()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        text = "\n\n".join(parser.blocks)
        if len(text) >= 200:
            documents.append((str(rel), text))
    return documents


def topics_documents() -> list[tuple[str, str]]:
    """(topic, text) for every topic of pydoc_data.topics (the language reference as `help()` shows it)."""
    from pydoc_data.topics import topics

    return [(name, re.sub(r"\n{3,}", "\n\n", text.strip())) for name, text in sorted(topics.items())]


@dataclass(frozen=True)
class Corpus:
    source: str  # what the documents are (for the results)
    documents: int
    characters: int
    train_tokens: list[int]  # train documents, tokenized and joined with the separator
    held_out_tokens: list[int]
    held_out_documents: list[str]


def build(source: str, tokenizer: object, held_out_fraction: float, seed: int) -> Corpus:
    """Read, split by document (seeded shuffle, `held_out_fraction` of the documents held out), tokenize, join."""
    if source == "docs":
        root = docs_root()
        if root is None:
            raise SystemExit(
                f"no Python HTML documentation under {DOCS_GLOB}: `apt-get install python3-doc` "
                "(make experiment-lm installs it), or use --corpus topics"
            )
        documents, described = (
            docs_documents(root),
            f"Python documentation, HTML pages of Debian's python3-doc ({root})",
        )
    else:
        documents = topics_documents()
        described = f"pydoc_data.topics of Python {sysconfig.get_python_version()} (the language reference)"
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    held = max(1, round(len(documents) * held_out_fraction))
    held_set = set(order[:held])
    separator = [0]  # <|endoftext|>
    train: list[int] = []
    held_out: list[int] = []
    texts = [text for _, text in documents]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    for index in order:  # the shuffled order: pages of a kind spread out
        (held_out if index in held_set else train).extend([*ids[index], *separator])
    return Corpus(
        source=described,
        documents=len(documents),
        characters=sum(map(len, texts)),
        train_tokens=train,
        held_out_tokens=held_out,
        held_out_documents=sorted(documents[i][0] for i in held_set),
    )
