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


def test_readme_has_generated_tables():
    assert len(blocks((ROOT / "README.md").read_text())) >= 1


def test_a_stale_table_is_found_and_rewritten(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("x\n<!-- generated: python -c print(42) -->\n41\n<!-- end generated -->\n")
    assert refresh(doc, check=True) == ["python -c print(42)"]
    assert refresh(doc) == ["python -c print(42)"]
    assert refresh(doc, check=True) == []
    assert "\n42\n" in doc.read_text()
