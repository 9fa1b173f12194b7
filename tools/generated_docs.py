"""Tables in the docs that are generated from committed result files, never retyped.

A generated block in a Markdown file is the output of one command between two
markers; the command renders a result file (JSON) written by a benchmark::

    <!-- generated: python benchmarks/routing_unit.py --table docs/results/x.json -->
    | unit | ... |
    <!-- end generated -->

``python -m tools.generated_docs README.md docs/*.md`` rewrites every block from its command;
``--check`` only reports the blocks that differ (the test suite runs it).

Example
-------
>>> text = "a\\n<!-- generated: echo hi -->\\nold\\n<!-- end generated -->\\nb\\n"
>>> [(b.command, b.content) for b in blocks(text)]
[('echo hi', 'old\\n')]
"""

import argparse
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(
    r"<!-- generated: (?P<command>.+?) -->\n(?P<content>.*?)<!-- end generated -->", re.S
)


@dataclass
class Block:
    command: str
    content: str
    start: int  # offsets of the content in the text
    end: int


def blocks(text: str) -> List[Block]:
    """The generated blocks of a Markdown text, in order."""
    return [
        Block(m["command"], m["content"], m.start("content"), m.end("content"))
        for m in BLOCK.finditer(text)
    ]


def render(command: str) -> str:
    """Output of a block's command, run from the repository root with this Python."""
    argv = shlex.split(command)
    if argv and argv[0] == "python":
        argv[0] = sys.executable
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if result.returncode:
        raise ValueError(f"generated block: `{command}` failed: {result.stderr.strip()[-500:]}")
    return result.stdout if result.stdout.endswith("\n") else result.stdout + "\n"


def refresh(path: Path, check: bool = False) -> List[str]:
    """Rewrites (or with ``check`` only compares) the blocks of ``path``; the stale commands."""
    text = path.read_text()
    stale, out, last = [], [], 0
    for block in blocks(text):
        fresh = render(block.command)
        if fresh != block.content:
            stale.append(block.command)
        out += [text[last : block.start], fresh]
        last = block.end
    out.append(text[last:])
    if stale and not check:
        from speechbrain_dsl.atomic import write_text

        write_text(path, "".join(out))
    return stale


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="report stale blocks, write nothing")
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        for command in refresh(path, args.check):
            print(f"{path}: {'stale' if args.check else 'rewrote'}: {command}")
            status = 1 if args.check else status
    return status


if __name__ == "__main__":
    sys.exit(main())
