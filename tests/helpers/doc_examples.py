"""Run every ```python block of one Markdown file, in order, in one namespace.

    python doc_examples.py README.md

Run in a fresh, empty working directory. A block whose first line is
``# not run by the tests: <reason>`` is skipped. Tracebacks name the Markdown
file and line. The last line printed is a JSON summary: the blocks run and
the blocks skipped, with their line and reason. Lightning relaunches this
script on every further DDP rank; only rank 0 prints the summary.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

SKIP = "# not run by the tests:"
FENCE = re.compile(r"^```python\s*$")


@dataclass(frozen=True)
class Block:
    line: int  # the line of the block's first line of code, 1-based
    source: str

    @property
    def skip_reason(self) -> str | None:
        first = self.source.lstrip("\n").split("\n", 1)[0].strip()
        return first[len(SKIP) :].strip() if first.startswith(SKIP) else None


def blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text (indented ones too), in order."""
    found, lines, start, indent = [], text.split("\n"), None, 0
    for number, line in enumerate(lines, start=1):
        stripped = line.lstrip()
        if start is None and FENCE.match(stripped):
            start, indent = number + 1, len(line) - len(stripped)
        elif start is not None and stripped.rstrip() == "```":
            body = [row[indent:] for row in lines[start - 1 : number - 1]]
            found.append(Block(start, "\n".join(body)))
            start = None
    return found


def main(path: str) -> None:
    markdown = Path(path).resolve()
    namespace: dict[str, object] = {"__name__": "__main__", "__file__": str(markdown)}
    ran, skipped = 0, []
    for block in blocks(markdown.read_text()):
        reason = block.skip_reason
        if reason is not None:
            skipped.append({"line": block.line, "reason": reason})
            continue
        # Padding keeps the line numbers of tracebacks those of the Markdown file.
        code = compile("\n" * (block.line - 1) + block.source, str(markdown), "exec")
        exec(code, namespace)
        ran += 1
    if os.environ.get("LOCAL_RANK", "0") == "0":
        print("\n" + json.dumps({"ran": ran, "skipped": skipped}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
