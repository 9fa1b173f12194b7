"""The commands and code in the docs name files that exist, and their Python compiles.

Every fenced ```bash / ```sh block of README.md and docs/**/*.md is read line by line
(continuation lines joined, comments dropped, ``cd`` followed): each token that looks
like a repository path (it contains ``/`` or ends in .py, .yaml or .md) must exist,
relative to the folder the block has ``cd``-ed into (the repository root at first).
Absolute paths, URLs, variables, options' names and ``<placeholders>`` are not
repository paths and are skipped; paths that commands create are allowed by
:data:`CREATED`. Every ```python block must compile. The Markdown links of the same
files must point at files inside the repository.
"""

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(p for p in [ROOT / "README.md", *ROOT.glob("docs/**/*.md")] if p.is_file())

#: Paths (relative to the repository root) that commands create, so need not exist yet.
CREATED = {
    ".venv/": "the virtual environment `make` creates",
    "data/": "corpora the generators write (git-ignored)",
    "results/": "outputs of the demo, benchmarks and tools (git-ignored)",
    "recipes/*/*/results/": "a recipe's output_folder (SpeechBrain's results/<experiment>/<seed>)",
}

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
PLACEHOLDER = re.compile(r"<[^<>\n]*>")
LINK = re.compile(r"\]\(([^()\s]+)\)")
PATH_LIKE = re.compile(r"(/|\.(py|yaml|md)$)")


def fenced_blocks(path):
    """``(language, code, name)`` of each fenced block; the name gives file and line."""
    text = path.read_text()
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        name = f"{path.relative_to(ROOT)}:{line} ({match[1] or 'plain'} block)"
        yield match[1], match[2], name


def shell_lines(code):
    """The block's command lines, continuation lines joined, placeholders blanked."""
    return [PLACEHOLDER.sub("PLACEHOLDER", line) for line in code.replace("\\\n", " ").split("\n")]


def path_tokens(line):
    """``(token, is_cd)`` for the words of a command line that may be repository paths."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # an unbalanced quote: nothing checkable
        return
    previous = None
    for word in words:
        is_cd, previous = previous == "cd", word.strip("(")
        # --option=value: the value may be a path
        part = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        part = part.strip("();&|")
        if not part or part.startswith(("http:", "https:", "$", "-", "/", "~")):
            continue
        if "..." in part or "PLACEHOLDER" in part or part in {".", ".."} and not is_cd:
            continue
        if is_cd or PATH_LIKE.search(part):
            yield part, is_cd


def created(relative):
    """True when ``relative`` (a path from the root) lies under an allowed output folder."""
    for prefix in CREATED:
        pattern = re.escape(prefix).replace(r"\*", "[^/]+")
        if re.match(pattern, relative + "/"):
            return True
    return False


def check_shell_block(code):
    """Missing paths of one block, following ``cd`` from line to line (not out of a subshell)."""
    missing, cwd = [], ROOT
    for line in shell_lines(code):
        subshell = line.lstrip().startswith("(")
        here = cwd
        for token, is_cd in path_tokens(line):
            target = (here / token).resolve()
            try:
                relative = target.relative_to(ROOT).as_posix()
            except ValueError:
                missing.append(f"{token} (outside the repository)")
                continue
            if not target.exists() and not created(relative):
                missing.append(token)
            if is_cd:
                here = target
        if not subshell:
            cwd = here
    return missing


BLOCKS = [block for path in DOCS for block in fenced_blocks(path)]
SHELL = [(code, name) for lang, code, name in BLOCKS if lang in {"bash", "sh", "shell"}]
PYTHON = [(code, name) for lang, code, name in BLOCKS if lang == "python"]


@pytest.mark.parametrize("code, name", SHELL, ids=[name for _, name in SHELL])
def test_shell_blocks_name_existing_paths(code, name):
    missing = check_shell_block(code)
    assert not missing, f"{name}: no such file or folder in the repository: {missing}"


@pytest.mark.parametrize("code, name", PYTHON, ids=[name for _, name in PYTHON])
def test_python_blocks_compile(code, name):
    compile(code, name, "exec")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_stay_inside_the_repository_and_exist(path):
    bad = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file = (path.parent / target.split("#", 1)[0]).resolve()
        if not file.is_relative_to(ROOT) or not file.exists():
            bad.append(target)
    assert not bad, f"{path.relative_to(ROOT)}: broken or outside links: {bad}"


def test_the_docs_have_commands_and_code():
    assert len(SHELL) >= 10 and len(PYTHON) >= 3


def test_a_broken_path_is_reported():
    block = "cd recipes/LibriTTS/codec\npython train.py hparams/no_such.yaml --data_folder=/x\n"
    assert check_shell_block(block) == ["hparams/no_such.yaml"]
    assert (
        check_shell_block("(cd recipes/LibriCount/probe && python train.py hparams/probe.yaml)\n")
        == []
    )
    assert check_shell_block("python recipes/nowhere/train.py --out results/x\n") == [
        "recipes/nowhere/train.py"
    ]
    assert check_shell_block("cat ../shared/paper.txt\n") == [
        "../shared/paper.txt (outside the repository)"
    ]
