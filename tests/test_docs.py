"""The documentation runs: every ```python block of README.md and docs/**/*.md, and the strict site build.

Each ```python block runs as its own script in a fresh interpreter (fresh namespace, a temporary
working directory), so a block may only use what it imports and defines itself. A block that is not
meant to run (it needs a GPU, a dataset, a checkpoint, or shows a fragment) is marked in one of two
ways, both documented in CONTRIBUTING.md:

- the fence carries the class ``.notest``: ```` ```python {.notest} ```` (also with a title:
  ```` ```python {.notest title="train.py"} ````);
- the line just before the fence is the HTML comment ``<!-- notest -->``.

A block that takes more than a few seconds (an ONNX export, say) carries the class ``.slow``
(```` ```python {.slow} ````): it still runs, marked ``@pytest.mark.slow``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
NOTEST_COMMENT = "<!-- notest -->"
BLOCK_TIMEOUT_S = 120

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    classes: tuple[str, ...]
    notest: bool
    source: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT).as_posix()}:{self.line}"


def _parse_info(info: str) -> tuple[str, tuple[str, ...]]:
    """Language and ``.class`` names of a fence info string (``python {.notest}`` or ``{.python}``)."""
    attrs = ""
    if "{" in info:
        head, _, rest = info.partition("{")
        attrs = rest.rsplit("}", 1)[0]
        info = head
    classes = tuple(token[1:] for token in attrs.split() if token.startswith("."))
    words = info.split()
    language = words[0].lower() if words else (classes[0].lower() if classes else "")
    return language, classes


def extract_blocks(path: Path) -> list[CodeBlock]:
    """All fenced code blocks of ``path``, including ones indented inside admonitions or lists."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[CodeBlock] = []
    index = 0
    while index < len(lines):
        match = _FENCE_OPEN.match(lines[index])
        if match is None:
            index += 1
            continue
        indent, fence = match["indent"], match["fence"]
        language, classes = _parse_info(match["info"])
        previous = next((lines[j].strip() for j in range(index - 1, -1, -1) if lines[j].strip()), "")
        body: list[str] = []
        end = index + 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        while end < len(lines) and closing.match(lines[end]) is None:
            line = lines[end]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            end += 1
        if end == len(lines):
            raise AssertionError(f"{path}:{index + 1}: code fence is never closed")
        blocks.append(
            CodeBlock(
                path=path,
                line=index + 1,
                language=language,
                classes=classes,
                notest="notest" in classes or previous == NOTEST_COMMENT,
                source="\n".join(body) + "\n",
            )
        )
        index = end + 1
    return blocks


def python_blocks(path: Path) -> list[CodeBlock]:
    """The ```python blocks of ``path`` (runnable or not)."""
    return [block for block in extract_blocks(path) if block.language in ("python", "py")]


RUNNABLE = [block for path in DOC_FILES for block in python_blocks(path) if not block.notest]


def run_block(block: CodeBlock, python: str | Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run ``block`` as a script with ``python`` in ``workdir`` (no repository path on sys.path)."""
    script = workdir / "doc_block.py"
    script.write_text(block.source, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.setdefault("MPLBACKEND", "Agg")
    return subprocess.run(
        [str(python), str(script)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
        check=False,
    )


def test_readme_predictor_block_runs_on_the_real_coco_sample(tmp_path: Path) -> None:
    """The README's "Predict in ten lines" (not run by the generic block test: it reads ../shared)."""
    from tests.helpers import require_shared_data

    require_shared_data()
    block = next(b for b in python_blocks(REPO_ROOT / "README.md") if "TopDownPredictor" in b.source)
    block = dataclasses.replace(
        block, source=block.source.replace('"../shared/', f'"{REPO_ROOT.parent}/shared/')
    )
    result = run_block(block, sys.executable, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(17, 2) (17,) (17,)") == 2, result.stdout


def test_docs_have_runnable_blocks() -> None:
    assert len(RUNNABLE) >= 10, [block.id for block in RUNNABLE]


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=b.id, marks=[pytest.mark.slow] if "slow" in b.classes else []) for b in RUNNABLE],
)
def test_python_block_runs(block: CodeBlock, tmp_path: Path) -> None:
    result = run_block(block, sys.executable, tmp_path)
    assert result.returncode == 0, (
        f"{block.id} failed (exit {result.returncode})\n--- source ---\n{block.source}"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def test_readme_starts_with_make_demo_and_make_test() -> None:
    blocks = extract_blocks(REPO_ROOT / "README.md")
    assert blocks, "README.md has no code block"
    first = blocks[0]
    assert first.language == "bash", first
    assert [line.strip() for line in first.source.splitlines() if line.strip()] == ["make demo", "make test"]


def test_readme_first_python_block_is_runnable() -> None:
    blocks = python_blocks(REPO_ROOT / "README.md")
    assert blocks, "README.md has no python block"
    assert not blocks[0].notest, "the README's first python block must run as written"
    for name in ("SimCCAdapter", "VisibilityAwareLoss", "SimCCKLLoss", "SimCCCodec"):
        assert name in blocks[0].source, name


def test_notest_markers_are_parsed(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\na = 1\n```\n\n"
        '```python {.notest title="x.py"}\nb = 2\n```\n\n'
        "<!-- notest -->\n\n```python\nc = 3\n```\n\n"
        "!!! note\n    ```python\n    d = 4\n    ```\n\n"
        "```bash\nmake test\n```\n",
        encoding="utf-8",
    )
    blocks = extract_blocks(page)
    assert [(b.language, b.notest, b.source) for b in blocks] == [
        ("python", False, "a = 1\n"),
        ("python", True, "b = 2\n"),
        ("python", True, "c = 3\n"),
        ("python", False, "d = 4\n"),
        ("bash", False, "make test\n"),
    ]


_LINK = re.compile(r"\]\((?!https?://|mailto:|#)(?P<target>[^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.relative_to(REPO_ROOT).as_posix() for p in DOC_FILES])
def test_relative_links_resolve(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    missing = [m["target"] for m in _LINK.finditer(text) if not (path.parent / m["target"]).exists()]
    assert not missing, f"{path.name} links to missing files: {missing}"


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install 'visattn[docs]')")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
