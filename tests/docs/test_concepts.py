"""docs/concepts.md stays tied to the code: every quoted line of code exists in the file it names, every named test
exists, every picture is there, and the README links the guide."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "concepts.md"


def _blocks(text: str, label: str) -> list[str]:
    """The text after each `**label**` up to the next bold label or blank line."""
    found = re.findall(rf"\*\*{label}\*\*(.*?)(?=\*\*[A-Z]|\n\n|\Z)", text, flags=re.S)
    return [b for b in found if b.lstrip().startswith("`")]  # the label used as a word in prose is no reference


def _squash(s: str) -> str:
    return " ".join(s.split())


def test_every_formula_names_code_that_exists() -> None:
    text = GUIDE.read_text()
    blocks = _blocks(text, "Computed by")
    assert len(blocks) >= 10
    for block in blocks:
        path, *snippets = re.findall(r"`([^`]+)`", block)
        source = (ROOT / path).read_text()
        assert snippets, f"no code quoted after {path}"
        for snippet in snippets:
            if snippet.startswith("F."):
                continue  # a torch function named in passing, not a line of ours
            assert _squash(snippet) in _squash(source), f"{path} no longer holds `{snippet}`"


def test_every_check_names_a_test_that_exists() -> None:
    text = GUIDE.read_text()
    named = [ref for block in _blocks(text, "Checked by") for ref in re.findall(r"`([^`]+::\w+)`", block)]
    assert len(named) >= 12
    for ref in named:
        path, name = ref.split("::")
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), flags=re.M), f"{ref} does not exist"


def test_pictures_exist_and_the_readme_links_the_guide() -> None:
    text = GUIDE.read_text()
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(pictures) == 7 and all((GUIDE.parent / p).is_file() for p in pictures)
    readme = (ROOT / "README.md").read_text()
    assert "(docs/concepts.md)" in readme and "(docs/new_modality.md)" in readme
