"""Every ```python block in README.md and docs/*.md runs as written.

Each markdown file is run in its own Python subprocess (own session, killed with its whole
process group on timeout), its blocks in order in one ``__main__`` namespace, as a reader
pasting them one after the other into a script would. Nothing is filled in by hand: a block
that needs a name must define it or follow a block of the same file that does.

A block that is not meant to run is marked in the markdown itself, with an HTML comment on
the line right before its fence::

    <!-- not-run: why this block cannot run -->
    ```python

Use that only for a block no user would paste as it is; output, error messages and
tracebacks go in ```text blocks, which are never run. A failure names the file and the line
of the block that failed.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from tests._subprocess import ROOT, run_python

FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^(`{3,})\s*python\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not-run:.*-->\s*$")

# Runs the blocks in one namespace. Each block is compiled under the markdown file's name,
# shifted down to its place in the file and put in linecache, so a traceback reads
# `File "README.md", line 57` and shows the failing source line.
_RUNNER = """\
import json, linecache, sys, traceback

if __name__ == "__main__":
    blocks = json.loads(open(sys.argv[1]).read())
    path = blocks[0]["path"]
    text = [""] * max(b["line"] + b["source"].count("\\n") for b in blocks)
    for b in blocks:
        for k, line in enumerate(b["source"].splitlines(True)):
            text[b["line"] - 1 + k] = line
    text = [line or "\\n" for line in text]
    linecache.cache[path] = (sum(map(len, text)), None, text, path)
    namespace = {"__name__": "__main__"}
    for b in blocks:
        try:
            exec(compile("\\n" * (b["line"] - 1) + b["source"], path, "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            sys.exit(1)
        print(f"@@ran {b['line']}", flush=True)
"""


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository root
    line: int  # line of the first source line in the markdown file
    source: str


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def extract(path: Path) -> list[Block]:
    """The runnable ```python blocks of one markdown file, in order."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start = i + 1
        end = start
        while end < len(lines) and lines[end].strip() != fence.group(1):
            end += 1
        if end == len(lines):
            raise AssertionError(f"{_shown(path)}:{i + 1}: ```python block is never closed")
        previous = next((x for x in reversed(lines[:i]) if x.strip()), "")
        if not _NOT_RUN.match(previous.strip()):
            source = "\n".join(lines[start:end]) + "\n"
            blocks.append(Block(_shown(path), start + 1, source))
        i = end + 1
    return blocks


def test_extract_reads_fences_markers_and_line_numbers(tmp_path):
    md = tmp_path / "doc.md"
    md.write_text(
        "# t\n\n```python\nx = 1\n```\n\n<!-- not-run: sketch -->\n```python\nboom(\n```\n"
        "```text\nnot python\n```\n````python\ny = x + 1\n````\n"
    )
    blocks = extract(md)
    assert [(b.line, b.source) for b in blocks] == [(4, "x = 1\n"), (15, "y = x + 1\n")]


@pytest.mark.slow
@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_python_blocks_run_as_written(path, tmp_path):
    blocks = extract(path)
    if not blocks:
        pytest.skip(f"{path.name} has no runnable ```python block")
    (tmp_path / "blocks.json").write_text(json.dumps([asdict(b) for b in blocks]))
    (tmp_path / "runner.py").write_text(_RUNNER)
    # The reader's working directory is their own, not the repository.
    proc = run_python(
        ["runner.py", "blocks.json"], timeout=480, cwd=tmp_path, env={"MPLBACKEND": "Agg"}
    )
    ran = {int(x.split()[1]) for x in proc.stdout.splitlines() if x.startswith("@@ran ")}
    failed = next((b for b in blocks if b.line not in ran), None)
    assert proc.returncode == 0 and failed is None, (
        f"{failed.path if failed else path.name}, block starting at line "
        f"{failed.line if failed else '?'}, failed (exit code {proc.returncode}):\n"
        f"{proc.stderr[-4000:]}"
    )
