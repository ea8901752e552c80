"""The documentation runs: every ```python block of README.md and docs/**/*.md, and the strict site build.

The built site is checked for Sphinx roles printed literally, diagram source shown as text, resources
from CDNs and private names in signatures, and (where /usr/bin/chromium exists) for diagrams that a
browser without network access draws as SVG.

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
import html
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


def test_readme_starts_with_the_predictor_then_a_runnable_quick_start() -> None:
    blocks = python_blocks(REPO_ROOT / "README.md")
    assert blocks, "README.md has no python block"
    # the first block predicts on the real COCO sample in ../shared: it runs in
    # test_readme_predictor_block_runs_on_the_real_coco_sample and in the fresh-venv wheel test
    for name in ("create_model", "TopDownPredictor"):
        assert name in blocks[0].source, name
    assert len([line for line in blocks[0].source.splitlines() if line.strip()]) <= 10
    quick_start = next(b for b in blocks if not b.notest)
    for name in ("SimCCAdapter", "VisibilityAwareLoss", "VisibilityMaskedReasoner", "model.head"):
        assert name in quick_start.source, name


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


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built once with ``mkdocs build --strict`` (any warning fails the build)."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install 'visattn[docs]')")
    site_dir = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(site_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed\n{result.stdout}{result.stderr}", pytrace=False)
    return site_dir


def site_pages(site: Path) -> dict[str, str]:
    """HTML of every page of the built site, by path relative to it."""
    return {
        p.relative_to(site).as_posix(): p.read_text(encoding="utf-8") for p in sorted(site.rglob("*.html"))
    }


_LITERAL_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|const|mod|exc|obj):(?:`|<code\b)")
_MERMAID_START = re.compile(
    r"^\s*(?:graph|flowchart|sequenceDiagram|classDiagram|stateDiagram(?:-v2)?|erDiagram|gantt|pie|journey|"
    r"gitGraph|mindmap|timeline|quadrantChart|block-beta)\b"
)
_PRE = re.compile(r"<pre\b(?P<attrs>[^>]*)>(?P<body>.*?)</pre>", re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_CDN = re.compile(
    r"unpkg\.com|cdn\.jsdelivr\.net|cdnjs\.cloudflare\.com|fonts\.googleapis\.com|fonts\.gstatic\.com"
)
_REMOTE_RESOURCE = re.compile(
    r"<(?:script\b[^>]*\bsrc|link\b(?=[^>]*\brel=\"(?:stylesheet|preload|modulepreload|preconnect)\")[^>]*\bhref)"
    r"=\"(?P<url>(?:https?:)?//[^\"]+)\""
)
_SIGNATURE = re.compile(r'<div class="doc-signature[^"]*">(?P<body>.*?)</div>', re.DOTALL)
_PRIVATE_IN_SIGNATURE = re.compile(r"(?:=|:|->|\[|,|\|)\s*_[A-Za-z]\w*")


def _text(html_fragment: str) -> str:
    return html.unescape(_TAG.sub("", html_fragment))


# The tests below share one build of the site: the xdist group keeps them on one worker.
@pytest.mark.slow
@pytest.mark.xdist_group("site")
def test_mkdocs_build_strict(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "objects.inv").is_file()


@pytest.mark.slow
@pytest.mark.xdist_group("site")
def test_site_has_no_literal_roles(site: Path) -> None:
    found = {page: _LITERAL_ROLE.findall(text) for page, text in site_pages(site).items()}
    found = {page: len(roles) for page, roles in found.items() if roles}
    assert not found, f"Sphinx roles printed literally (page: count): {found}"


def test_literal_role_pattern() -> None:
    assert _LITERAL_ROLE.search(":class:<code>~visattn.heads.SimCCHead</code>")
    assert _LITERAL_ROLE.search(":func:`x`")
    assert not _LITERAL_ROLE.search('<a href="#visattn.heads.SimCCHead"><code>SimCCHead</code></a>')


@pytest.mark.slow
@pytest.mark.xdist_group("site")
def test_site_diagrams_are_mermaid_containers(site: Path) -> None:
    diagrams, raw = 0, []
    for page, text in site_pages(site).items():
        for match in _PRE.finditer(text):
            if not _MERMAID_START.match(_text(match["body"])):
                continue
            if re.search(r'\bclass="[^"]*\bmermaid\b', match["attrs"]):
                diagrams += 1
                assert "assets/javascripts/mermaid.min.js" in text, f"{page} does not load the local mermaid"
            else:
                raw.append(page)
    assert not raw, f"diagram source shown as text (not in a mermaid container) on {raw}"
    assert diagrams >= 2, diagrams  # the home page and Concepts
    bundle = site / "assets" / "javascripts" / "mermaid.min.js"
    assert bundle.stat().st_size > 1_000_000  # the real bundle, not a pointer or a stub
    assert (site / "assets" / "javascripts" / "MERMAID-LICENSE").is_file()


@pytest.mark.slow
@pytest.mark.xdist_group("site")
def test_site_loads_nothing_from_cdns(site: Path) -> None:
    problems = {}
    for page, text in site_pages(site).items():
        found = [m["url"] for m in _REMOTE_RESOURCE.finditer(text)] + _CDN.findall(text)
        if found:
            problems[page] = sorted(set(found))
    assert not problems, f"pages that need the network to render: {problems}"


@pytest.mark.slow
@pytest.mark.xdist_group("site")
def test_site_signatures_show_no_private_names(site: Path) -> None:
    problems = {}
    for page, text in site_pages(site).items():
        if page.startswith("api/"):
            found = [
                m for s in _SIGNATURE.finditer(text) for m in _PRIVATE_IN_SIGNATURE.findall(_text(s["body"]))
            ]
            if found:
                problems[page] = found
    assert not problems, f"private names in rendered signatures: {problems}"


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.slow
@pytest.mark.xdist_group("site")
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")
def test_site_diagrams_render_offline_in_chromium(site: Path) -> None:
    """Headless Chromium with every host but 127.0.0.1 unresolvable draws each diagram as SVG."""
    from tests.helpers import load_docs_tool  # imports torch: not at the top of this module

    screenshot = load_docs_tool("screenshot")
    pages = screenshot.mermaid_pages(site)
    assert "" in pages, pages  # the home page has a diagram
    reports = screenshot.run(site, None, str(CHROMIUM), pages)
    for report in reports:
        assert report.diagrams >= 1, report.url
        assert len(report.svgs) == report.diagrams, (
            f"{report.url}: {len(report.svgs)}/{report.diagrams} drawn"
        )
        assert all(svg.startswith("<svg") for svg in report.svgs), report.url
        assert not report.external, f"{report.url} requested {report.external}"
        assert not report.errors, f"{report.url}: {report.errors}"
    home = reports[pages.index("")]
    assert "VisibilityMaskedReasoner" in home.svgs[0]  # a node label of the home page's diagram
