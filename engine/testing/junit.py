"""Flow test results as JUnit XML (one testsuite per test file), for CI."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET


def _clean(text: str) -> str:
    """XML 1.0 cannot hold most control characters, nor a lone surrogate (a file name whose bytes
    are not UTF-8): they are shown as \\xNN or \\uNNNN, so the report is always a document CI can parse."""
    return "".join(c if c in "\t\n\r" or 0x20 <= ord(c) < 0xd800 or 0xe000 <= ord(c) < 0xfffe or ord(c) > 0xffff
                   else f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}" for c in text)


def write(results: list[Any], path: str | Path) -> None:
    """Write ``results`` (TestResult) to ``path``, whole or not at all."""
    root = ET.Element("testsuites", name="flowrun test", tests=str(len(results)),
                      failures=str(sum(1 for r in results if not r.passed and not r.error)),
                      errors=str(sum(1 for r in results if r.error)),
                      time=f"{sum(r.seconds for r in results):.3f}")
    by_file: dict[str, list[Any]] = {}
    for r in results:
        by_file.setdefault(r.file, []).append(r)
    for file, items in by_file.items():
        suite = ET.SubElement(root, "testsuite", name=_clean(file), tests=str(len(items)),
                              failures=str(sum(1 for r in items if not r.passed and not r.error)),
                              errors=str(sum(1 for r in items if r.error)),
                              time=f"{sum(r.seconds for r in items):.3f}")
        for r in items:
            case = ET.SubElement(suite, "testcase", classname=_clean(file), name=_clean(r.name or file),
                                 time=f"{r.seconds:.3f}")
            if r.error:
                ET.SubElement(case, "error", message=_clean(r.error.splitlines()[0])).text = _clean(r.error)
            elif not r.passed:
                ET.SubElement(case, "failure", message=_clean(r.failures[0] if r.failures else "failed")).text = \
                    _clean("\n".join(r.failures))
            if r.notes:  # what --record ran for real but could not record
                ET.SubElement(case, "system-out").text = _clean("\n".join(f"note: {n}" for n in r.notes))
    path = Path(path)
    data = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
