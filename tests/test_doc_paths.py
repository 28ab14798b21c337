"""Docs do not rot: every project path that README.md, docs/, flows/ and examples/ mention
(``tests/...``, ``engine/...``, ``flows/...``, a relative Markdown link, ...) exists."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
TOP = ("tests", "engine", "nodes", "flows", "examples", "docs", "bench", "schemas", ".ci")
MENTION = re.compile(r"(?<![\w/.:-])((?:" + "|".join(re.escape(t) for t in TOP) + r")/[\w./-]*\w)")
LINK = re.compile(r"\]\((?!https?:|mailto:|#)([\w./-]+)[)#]")  # a markdown link to a file, not a regex's "](?!"


def generated() -> tuple[str, ...]:
    """Folders .gitignore names (``tests/artifacts/``: the browser tests write it): a document may
    point at them before anything has made them."""
    lines = (ROOT / ".gitignore").read_text().splitlines() if (ROOT / ".gitignore").is_file() else []
    return tuple(line.strip().rstrip("/") for line in lines if "/" in line.strip().rstrip("/") and "*" not in line)


def documents() -> list[Path]:
    found = [ROOT / "README.md", *ROOT.glob("docs/**/*.md")]
    for folder in ("flows", "examples"):
        found += [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".md", ".py",
                                                                                          ".json")]
    return sorted(found)


def mentions(path: Path) -> list[tuple[int, str, Path]]:
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        for m in MENTION.finditer(line):
            out.append((number, m.group(1), ROOT / m.group(1)))
        if path.suffix == ".md":
            for m in LINK.finditer(line):
                out.append((number, m.group(1), (path.parent / m.group(1)).resolve()))
    return out


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_a_document_mentions_exists(doc):
    missing = [f"{doc.relative_to(ROOT)}:{n}: {text}" for n, text, target in mentions(doc)
               if not target.exists() and not any(ch in text for ch in "*<>{}")
               and not text.rstrip("/").startswith(generated())]
    assert missing == []


def test_the_checker_finds_a_missing_path(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("see tests/test_examples.py and [the guide](nowhere.md), not https://x/tests/a.py\n")
    found = [(text, target.exists()) for _, text, target in mentions(doc)]
    assert ("tests/test_examples.py", False) in found and ("nowhere.md", False) in found
    assert all("https" not in text for text, _ in found)
