"""docs/tools/convert_roles.py on a small package written by the test: every role form, the name lookup
order, the inventory, docstrings and comments only, rewrapping, Markdown, idempotence and the CLI."""

from __future__ import annotations

import sys
import textwrap
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import load_docs_tool

PKG = "rolespkg"
FILES = {
    "__init__.py": '''
        """The package."""
        from rolespkg.heads import Head
        from rolespkg.util import helper

        __all__ = ["Head", "helper"]
    ''',
    "heads.py": '''
        """Heads."""
        __all__ = ["Head"]


        class Head:
            """A head."""

            def forward(self) -> None:
                """Run."""
    ''',
    "util.py": '''
        """Helpers."""
        __all__ = ["CONSTANT", "helper"]

        CONSTANT = (1, 2)


        def helper() -> None:
            """Help."""
    ''',
    "reasoner.py": '''
        """Reasoner."""
        import os

        from rolespkg.heads import Head

        __all__ = ["SOURCES", "Reasoner"]

        SOURCES = ("a", "b")


        class Reasoner:
            """Uses a head; set the threshold with :meth:`calibrate`."""

            def calibrate(self) -> None:
                """Calibrate."""
    ''',
    "_impl.py": '''
        def secret() -> None:
            """Private."""
    ''',
}
# What a site build would list: the own heading of each object (1) and the aliases (2).
INVENTORY = {
    PKG: 1,
    f"{PKG}.heads": 1,
    f"{PKG}.heads.Head": 1,
    f"{PKG}.heads.Head.forward": 1,
    f"{PKG}.util.helper": 1,
    f"{PKG}.reasoner.Reasoner": 1,
    f"{PKG}.reasoner.Reasoner.calibrate": 1,
    f"{PKG}.Head": 2,
    f"{PKG}.helper": 2,
}


cr = load_docs_tool("convert_roles")


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding the package ``rolespkg`` of FILES, importable while the tests of this file run."""
    root = tmp_path_factory.mktemp("src")
    (root / PKG).mkdir()
    for name, text in FILES.items():
        (root / PKG / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PKG or m.startswith(PKG + ".")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def index(src: Path) -> object:
    return cr.Index(PKG, dict(INVENTORY))


def _context(src: Path) -> object:
    source = (src / PKG / "reasoner.py").read_text(encoding="utf-8")
    return cr.ModuleContext.from_source(source, f"{PKG}.reasoner")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":class:`~rolespkg.heads.Head`", "[`Head`][rolespkg.heads.Head]"),
        (":class:`rolespkg.heads.Head`", "[`rolespkg.heads.Head`][rolespkg.heads.Head]"),
        (":py:class:`~rolespkg.heads.Head`", "[`Head`][rolespkg.heads.Head]"),
        (":class:`Head`", "[`Head`][rolespkg.heads.Head]"),  # imported by the module
        (":meth:`Reasoner.calibrate`", "[`Reasoner.calibrate`][rolespkg.reasoner.Reasoner.calibrate]"),
        (":meth:`Head.forward()`", "[`Head.forward()`][rolespkg.heads.Head.forward]"),
        (":func:`helper`", "[`helper`][rolespkg.util.helper]"),  # the package's public names
        (":func:`helper()`", "[`helper()`][rolespkg.util.helper]"),
        (":func:`the helper <rolespkg.util.helper>`", "[the helper][rolespkg.util.helper]"),
        (":func:`!rolespkg.util.helper`", "`rolespkg.util.helper`"),
        (":mod:`rolespkg.heads`", "[`rolespkg.heads`][rolespkg.heads]"),
        (":data:`SOURCES`", "`SOURCES`"),  # defined in the module, but not on the site
        (":data:`CONSTANT`", "`CONSTANT`"),
        (":func:`~rolespkg._impl.secret`", "`secret`"),  # private
        (":func:`missing`", "`missing`"),
        (":func:`os.path.join`", "`os.path.join`"),  # another package
        (":exc:`ValueError`", "`ValueError`"),
        (
            "(see :func:`helper`, :class:`Head`)",
            "(see [`helper`][rolespkg.util.helper], [`Head`][rolespkg.heads.Head])",
        ),
    ],
)
def test_role_forms(src: Path, index: object, text: str, expected: str) -> None:
    new, outcomes = cr.convert_text(text, _context(src), 1, index, "reasoner.py")
    assert new == expected
    assert len(outcomes) == text.count(":`")


def test_plain_code_is_reported(src: Path, index: object) -> None:
    text = ":data:`CONSTANT` :func:`missing` :func:`os.path.join` :func:`helper`"
    _, outcomes = cr.convert_text(text, _context(src), 3, index, "reasoner.py")
    assert [(o.target, bool(o.note), o.note == "external", o.line) for o in outcomes] == [
        (None, True, False, 3),
        (None, True, False, 3),
        (None, True, True, 3),
        ("rolespkg.util.helper", False, False, 3),
    ]
    assert "rolespkg.util.CONSTANT" in outcomes[0].note  # says what it tried


def test_inventory_prefers_the_objects_own_heading(src: Path) -> None:
    inventory = {**INVENTORY, f"{PKG}.helper": 1, f"{PKG}.util.helper": 2}
    index = cr.Index(PKG, inventory)
    assert cr.convert_text(":func:`helper`", None, 1, index, "x.md")[0] == "[`helper`][rolespkg.helper]"
    # a written path that the site lists is kept; one it does not list moves to a listed alias
    assert cr.convert_text(":func:`rolespkg.util.helper`", None, 1, index, "x.md")[0] == (
        "[`rolespkg.util.helper`][rolespkg.util.helper]"
    )
    del inventory[f"{PKG}.util.helper"]
    assert cr.convert_text(":func:`rolespkg.util.helper`", None, 1, cr.Index(PKG, inventory), "x.md")[0] == (
        "[`rolespkg.util.helper`][rolespkg.helper]"
    )


def test_without_inventory_any_public_importable_path_counts(src: Path) -> None:
    index = cr.Index(PKG, None)
    context = _context(src)
    assert (
        cr.convert_text(":data:`CONSTANT`", context, 1, index, "r.py")[0]
        == "[`CONSTANT`][rolespkg.util.CONSTANT]"
    )
    assert (
        cr.convert_text(":data:`SOURCES`", context, 1, index, "r.py")[0]
        == "[`SOURCES`][rolespkg.reasoner.SOURCES]"
    )
    assert cr.convert_text(":func:`~rolespkg._impl.secret`", context, 1, index, "r.py")[0] == "`secret`"


def test_method_of_the_enclosing_class(src: Path, index: object) -> None:
    path = src / PKG / "reasoner.py"
    new, outcomes = cr.convert_python(path.read_text(encoding="utf-8"), path, index)
    assert (
        '"""Uses a head; set the threshold with [`calibrate`][rolespkg.reasoner.Reasoner.calibrate]."""'
        in new
    )
    assert [o.line for o in outcomes] == [12]


def test_only_docstrings_and_comments_change(src: Path, index: object) -> None:
    path = src / PKG / "sample.py"  # inside the package: its module is rolespkg.sample
    source = textwrap.dedent('''\
        """See :class:`Head`."""
        from rolespkg.heads import Head

        MESSAGE = "use :class:`Head`"  # see :func:`helper`


        def f() -> str:
            """Calls :func:`helper`."""
            return f":func:`helper` {Head}"
        ''')
    expected = textwrap.dedent('''\
        """See [`Head`][rolespkg.heads.Head]."""
        from rolespkg.heads import Head

        MESSAGE = "use :class:`Head`"  # see [`helper`][rolespkg.util.helper]


        def f() -> str:
            """Calls [`helper`][rolespkg.util.helper]."""
            return f":func:`helper` {Head}"
        ''')
    new, outcomes = cr.convert_python(source, path, index)
    assert new == expected
    assert [o.line for o in outcomes] == [1, 4, 8]
    assert cr.convert_python(new, path, index) == (new, [])  # idempotent


def test_rewrap_long_lines(src: Path, index: object) -> None:
    path = src / PKG / "sample.py"
    source = textwrap.dedent('''\
        def f(x: object, y: object) -> None:
            """Summary.

            Uses :class:`~rolespkg.heads.Head` to do things
            and more words.

            Args:
                x: a :class:`~rolespkg.heads.Head` or None here.
                y: other.
            """
        ''')
    expected = textwrap.dedent('''\
        def f(x: object, y: object) -> None:
            """Summary.

            Uses [`Head`][rolespkg.heads.Head] to do
            things and more words.

            Args:
                x: a [`Head`][rolespkg.heads.Head] or None
                    here.
                y: other.
            """
        ''')
    new, _ = cr.convert_python(source, path, index, line_length=50)
    assert new == expected
    assert max(len(line) for line in new.splitlines()) <= 50


def test_wrap_comment_keeps_the_comment_marker() -> None:
    assert cr.wrap_comment("    #: see [`helper`][rolespkg.util.helper] and more", 44) == (
        "    #: see [`helper`][rolespkg.util.helper]\n    #: and more"
    )


def test_split_point_avoids_links_and_code_spans() -> None:
    line = "a ``b c`` [`d`][e.f] g"
    assert cr._split_point(line, 8, 0) == 1  # not inside ``b c``
    assert cr._split_point(line, 19, 0) == 9  # not inside the link
    assert cr._split_point(line, len(line), 0) == 20
    assert cr._split_point("``x y``", 6, 0) == 3  # only a space inside code: taken as the last resort


def test_markdown_outside_code_blocks(src: Path, index: object, tmp_path: Path) -> None:
    code = "```python\nx = ':class:`Head`'\n```\n"
    text = f"Use :class:`~rolespkg.heads.Head`.\n\n{code}\n:func:`helper`\n"
    expected = f"Use [`Head`][rolespkg.heads.Head].\n\n{code}\n[`helper`][rolespkg.util.helper]\n"
    new, outcomes = cr.convert_markdown(text, tmp_path / "page.md", index)
    assert new == expected
    assert [o.line for o in outcomes] == [1, 7]


def test_module_name(src: Path, tmp_path: Path) -> None:
    assert cr.module_name(src / PKG / "heads.py") == f"{PKG}.heads"
    assert cr.module_name(src / PKG / "__init__.py") == PKG
    assert cr.module_name(tmp_path / "script.py") is None


def _write_inventory(path: Path, names: dict[str, int]) -> None:
    body = "".join(f"{name} py:class {priority} api/#$ -\n" for name, priority in names.items())
    header = "# Sphinx inventory version 2\n# Project: x\n# Version: 0\n# zlib compressed\n"
    path.write_bytes(header.encode() + zlib.compress(body.encode()))


def test_read_inventory(tmp_path: Path) -> None:
    _write_inventory(tmp_path / "objects.inv", {"rolespkg.Head": 1, "rolespkg.heads.Head": 2})
    assert cr.read_inventory(tmp_path / "objects.inv") == {"rolespkg.Head": 1, "rolespkg.heads.Head": 2}
    (tmp_path / "bad.inv").write_bytes(b"not an inventory")
    with pytest.raises(ValueError, match="not a Sphinx inventory"):
        cr.read_inventory(tmp_path / "bad.inv")


def test_cli_check_then_write(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_inventory(tmp_path / "objects.inv", INVENTORY)
    page = tmp_path / "page.md"
    page.write_text("See :class:`~rolespkg.heads.Head` and :func:`missing`.\n", encoding="utf-8")
    args = ["--src", str(src), "--package", PKG, "--inventory", str(tmp_path / "objects.inv"), str(tmp_path)]
    assert cr.main(["--check", *args]) == 1
    assert ":class:" in page.read_text(encoding="utf-8")  # --check writes nothing
    assert cr.main(args) == 0
    assert page.read_text(encoding="utf-8") == "See [`Head`][rolespkg.heads.Head] and `missing`.\n"
    out, err = capsys.readouterr()
    assert "2 roles: 1 cross-references" in out
    assert "page.md:1: warning: :func:`missing` -> `missing`" in err
    assert cr.main(["--check", *args]) == 0
