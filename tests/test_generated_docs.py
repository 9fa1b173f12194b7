"""Every generated table in the docs equals what its command renders from the result files."""

from pathlib import Path

import pytest

from tools.generated_docs import blocks, refresh

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    p for p in [ROOT / "README.md", ROOT / "TRAINING.md", *ROOT.glob("docs/**/*.md")] if p.is_file()
)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_generated_tables_match_their_result_files(path):
    assert refresh(path, check=True) == []


def test_every_result_file_has_a_generated_table_in_the_docs():
    """The tables moved from README.md into docs/ are still rendered (and checked above)."""
    commands = [block.command for path in DOCS for block in blocks(path.read_text())]
    results = sorted((ROOT / "docs" / "results").glob("*.json"))
    assert results
    for result in results:
        name = f"docs/results/{result.name}"
        assert any(name in command for command in commands), f"no generated table shows {name}"


def test_a_stale_table_is_found_and_rewritten(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("x\n<!-- generated: python -c print(42) -->\n41\n<!-- end generated -->\n")
    assert refresh(doc, check=True) == ["python -c print(42)"]
    assert refresh(doc) == ["python -c print(42)"]
    assert refresh(doc, check=True) == []
    assert "\n42\n" in doc.read_text()
