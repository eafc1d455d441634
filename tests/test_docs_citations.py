"""Every spec citation in the code names a section that exists in docs/.

Comments cite the protocol docs as ``data-channel.md §4.5`` or ``agent.md §1.12`` (also
``agent spec §3.2``, lists such as ``§4.2, §5.3`` and ranges such as ``§1.3-1.4``). A bare
``§N`` that does not follow a document belongs to the first document its file cites. A
citation of ``interfaces.md, "Heading"`` must name a heading of docs/interfaces.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCANNED = ("hatchway", "tests")
SUFFIXES = {".py", ".js", ".mjs", ".html"}
SKIPPED_PARTS = {"node_modules", "vendor", "__pycache__"}
THIS_FILE = Path(__file__).resolve()

SECTIONED_DOCS = {"agent": "agent.md", "data-channel": "data-channel.md"}
_NUMBER = r"\d+(?:\.\d+)*"
_TOKEN = re.compile(
    r"(?P<doc>\b(?:agent|data-channel))(?:\.md\b| spec\b)"
    rf"|§\s?(?P<first>{_NUMBER})(?:\s?[-\u2013]\s?(?P<last>{_NUMBER}))?"
)
# What may stand between a document and the sections that belong to it: "agent.md §4.2,
# §6", "agent spec §1.8 and §3", or a citation that a line break and "#" interrupt.
_CHAIN_GAP = re.compile(r"[\s,;/&#*]*(?:and|or)?[\s,;/&#*]*")
_INTERFACES = re.compile(r'interfaces\.md, "(?P<heading>[^"]+)"')
_HEADING = re.compile(rf"^#{{1,6}}\s+§?(?P<number>{_NUMBER})\.?\s+(?P<title>.+?)\s*$")


@dataclass(frozen=True)
class Citation:
    path: str
    line: int
    doc: str | None  # None: a bare § in a file that names no document
    section: str
    explicit: bool


def citations_in(text: str, path: str = "<text>") -> list[Citation]:
    found: list[Citation] = []
    first = next((m for m in _TOKEN.finditer(text) if m.group("doc")), None)
    default = SECTIONED_DOCS[first.group("doc")] if first else None
    chain_doc: str | None = None
    chain_end = 0
    for match in _TOKEN.finditer(text):
        if match.group("doc"):
            chain_doc = SECTIONED_DOCS[match.group("doc")]
            chain_end = match.end()
            continue
        explicit = chain_doc is not None and bool(
            _CHAIN_GAP.fullmatch(text[chain_end : match.start()])
        )
        doc = chain_doc if explicit else default
        if not explicit:
            chain_doc = None
        else:
            chain_end = match.end()
        line = text.count("\n", 0, match.start()) + 1
        for number in filter(None, (match.group("first"), match.group("last"))):
            found.append(Citation(path, line, doc, number, explicit))
    return found


def headings(doc: Path) -> dict[str, str]:
    """Section number to title, for every numbered heading of a doc."""
    result = {}
    for line in doc.read_text(encoding="utf-8").splitlines():
        match = _HEADING.match(line)
        if match:
            result[match.group("number")] = match.group("title")
    return result


def source_files() -> list[Path]:
    files = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if (
                path.suffix in SUFFIXES
                and path.is_file()
                and path.resolve() != THIS_FILE
                and not SKIPPED_PARTS & set(path.parts)
            ):
                files.append(path)
    return files


def all_citations() -> list[Citation]:
    found = []
    for path in source_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        found += citations_in(text, str(path.relative_to(ROOT)))
    return found


def test_the_parser_reads_lists_ranges_and_bare_sections():
    text = (
        '"""The client (data-channel.md §1.4, §4, §6).\n'
        "x = 1  # agent.md §4.1-4.3\n"
        "# (agent.md\n#  §4.4), then a bare (§3.4) and agent spec §1.8 and §3\n"
    )
    got = [(c.doc, c.section, c.explicit) for c in citations_in(text)]
    assert got == [
        ("data-channel.md", "1.4", True),
        ("data-channel.md", "4", True),
        ("data-channel.md", "6", True),
        ("agent.md", "4.1", True),
        ("agent.md", "4.3", True),
        ("agent.md", "4.4", True),
        ("data-channel.md", "3.4", False),
        ("agent.md", "1.8", True),
        ("agent.md", "3", True),
    ]


def test_the_code_cites_the_docs():
    # Guards the scanner itself: finding nothing would make the next test pass vacuously.
    assert len(all_citations()) > 50


def test_every_cited_section_exists_in_docs():
    sections = {name: headings(DOCS / name) for name in SECTIONED_DOCS.values()}
    missing = []
    for citation in all_citations():
        docs = [citation.doc] if citation.doc else list(sections)
        if not any(citation.section in sections[doc] for doc in docs):
            where = citation.doc or " or ".join(docs)
            missing.append(f"{citation.path}:{citation.line}: {where} §{citation.section}")
    assert not missing, "cited sections missing from docs/:\n" + "\n".join(missing)


def test_every_cited_interfaces_heading_exists():
    titles = {
        line.lstrip("#").strip()
        for line in (DOCS / "interfaces.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    missing = []
    for path in source_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in _INTERFACES.finditer(text):
            if match.group("heading") not in titles:
                missing.append(f"{path.relative_to(ROOT)}: {match.group('heading')}")
    assert not missing, "headings missing from docs/interfaces.md:\n" + "\n".join(missing)
