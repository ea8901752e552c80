"""Rewrite Sphinx roles in docstrings and comments into mkdocstrings cross-references.

mkdocstrings renders Markdown, so a reST role such as ``:class:`~visattn.heads.SimCCHead``` prints
literally on the API pages. This script rewrites the roles of the files it is given (``.py``: docstrings
and comments only; ``.md``: outside code blocks) into autorefs cross-references::

    :class:`~visattn.heads.SimCCHead`         ->  [`SimCCHead`][visattn.heads.SimCCHead]
    :class:`visattn.heads.SimCCHead`          ->  [`visattn.heads.SimCCHead`][visattn.heads.SimCCHead]
    :meth:`calibrate_threshold`  (in VisibilityMaskedReasoner)
        ->  [`calibrate_threshold`][visattn.reasoner.VisibilityMaskedReasoner.calibrate_threshold]
    :func:`torch.export.export`               ->  `torch.export.export`

A name without a package path is looked up in order: members of the enclosing classes, names the module
defines, names it imports (parsed with ``ast``), then the public names of the package (``__all__`` of
every public module, found by importing it). The first of these that the site documents wins; with
``--inventory`` (the ``objects.inv`` of a build of the site) "documented" means listed there, without it
importable and free of private parts. Of the documented paths of that object (it may be exported by
several modules) the one the inventory lists as its own heading is taken. A path written out in full is
kept when it is documented. A role that resolves to nothing documented (a private name, a constant
without a docstring, another package) becomes plain code and, unless it names another package, a warning
on stderr. Trailing ``()`` stays in the text and leaves the target; ``title <target>`` keeps the title;
``!target`` becomes plain code.

Running it twice changes nothing: the output contains no roles. Long lines are rewrapped only where a
rewrite pushed a line of a paragraph past ``--line-length``.

    mkdocs build -d /tmp/site-roles        # for the inventory
    python docs/tools/convert_roles.py --inventory /tmp/site-roles/objects.inv src/visattn

``--check`` reports what would change and exits 1 when something would, without writing.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import importlib
import importlib.util
import io
import pkgutil
import re
import sys
import tokenize
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "visattn"
LINE_LENGTH = 110

ROLE = re.compile(
    r"(?<![\w`]):(?:py:)?(?P<kind>class|func|meth|attr|data|const|mod|exc|obj):`(?P<body>[^`\n]+)`"
)
_TITLED = re.compile(r"^(?P<title>.*?\S)\s*<(?P<target>[^<>]+)>$")
_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})")


@dataclass(frozen=True)
class Role:
    """One parsed role: ``:kind:`body```."""

    kind: str
    target: str  # without ``~``, ``!``, a leading ``.`` and trailing ``()``
    text: str  # what the reader sees
    titled: bool  # ``title <target>``: the text is prose, not code
    link: bool  # False for ``!target``

    @classmethod
    def parse(cls, kind: str, body: str) -> Role:
        titled = _TITLED.match(body)
        target = (titled["target"] if titled else body).strip()
        link = not target.startswith("!")
        target = target.lstrip("!")
        short = target.startswith("~")
        target = target.lstrip("~").lstrip(".")
        parens = target.endswith("()")
        target = target.removesuffix("()")
        if titled:
            text = titled["title"]
        else:
            text = (target.rsplit(".", 1)[-1] if short else target) + ("()" if parens else "")
        return cls(kind=kind, target=target, text=text, titled=bool(titled), link=link)

    def plain(self) -> str:
        return self.text if self.titled else f"`{self.text}`"

    def reference(self, path: str) -> str:
        return f"[{self.plain()}][{path}]"


@dataclass
class ModuleContext:
    """What a role in one Python file can refer to without a package path."""

    module: str | None  # dotted name of the module, None outside the package
    defined: set[str] = field(default_factory=set)  # top-level names the module defines
    imported: dict[str, str] = field(default_factory=dict)  # local name -> dotted path
    classes: list[tuple[int, int, str]] = field(default_factory=list)  # (first line, last line, path)

    def enclosing_classes(self, line: int) -> list[str]:
        """Paths of the classes around ``line``, innermost first."""
        around = [(first, path) for first, last, path in self.classes if first <= line <= last]
        return [path for _, path in sorted(around, reverse=True)]

    @classmethod
    def from_source(cls, source: str, module: str | None, is_package: bool = False) -> ModuleContext:
        tree = ast.parse(source)
        context = cls(module=module)
        package = (module if is_package else module.rpartition(".")[0]) if module else ""
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                context.defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                context.defined.update(t.id for t in targets if isinstance(t, ast.Name))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".") if package else []
                    parts = parts[: len(parts) - node.level + 1] if node.level > 1 else parts
                    base = ".".join([*parts, base] if base else parts)
                for alias in node.names:
                    context.imported[alias.asname or alias.name] = f"{base}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        context.imported[alias.asname] = alias.name
                    else:
                        head = alias.name.split(".")[0]
                        context.imported[head] = head
        cls._collect_classes(tree, module or "", context.classes)
        return context

    @staticmethod
    def _collect_classes(node: ast.AST, prefix: str, out: list[tuple[int, int, str]]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                path = f"{prefix}.{child.name}" if prefix else child.name
                out.append((child.lineno, child.end_lineno or child.lineno, path))
                ModuleContext._collect_classes(child, path, out)


def read_inventory(path: Path) -> dict[str, int]:
    """Names of a Sphinx ``objects.inv`` (version 2) and their priority (1: the object's own heading)."""
    data = path.read_bytes()
    header_lines = 4
    parts = data.split(b"\n", header_lines)
    if len(parts) <= header_lines or not parts[0].startswith(b"# Sphinx inventory version 2"):
        raise ValueError(f"{path} is not a Sphinx inventory (version 2)")
    names: dict[str, int] = {}
    for line in zlib.decompress(parts[header_lines]).decode("utf-8").splitlines():
        match = re.match(r"^(?P<name>\S+)\s+\S+:\S+\s+(?P<priority>-?\d+)\s", line)
        if match:
            names[match["name"]] = min(int(match["priority"]), names.get(match["name"], 99))
    return names


def _is_private(path: str) -> bool:
    return any(part.startswith("_") for part in path.split("."))


class Index:
    """The package's public names and a test of whether a dotted path is documented."""

    def __init__(self, package: str = PACKAGE, inventory: dict[str, int] | None = None) -> None:
        self.package = package
        self.inventory = inventory
        self.by_name: dict[str, list[str]] = {}  # public name -> paths exporting it
        self.by_object: dict[int, list[str]] = {}  # id(object) -> public paths of that object
        self._objects: dict[int, Any] = {}  # keeps the indexed objects (and so their ids) alive
        root = importlib.import_module(package)
        modules = [root]
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if not _is_private(info.name):
                modules.append(importlib.import_module(info.name))
        for module in modules:
            for name in getattr(module, "__all__", ()):
                if not hasattr(module, name):
                    continue
                obj = getattr(module, name)
                path = f"{module.__name__}.{name}"
                self.by_name.setdefault(name, []).append(path)
                self.by_object.setdefault(id(obj), []).append(path)
                self._objects[id(obj)] = obj
        for paths in self.by_object.values():
            paths.sort(key=lambda p: self._preference(p))

    def _preference(self, path: str) -> tuple[int, int, str]:
        """Sort key: the defining module first, then the packages closest to it, then the rest."""
        module = path.rpartition(".")[0]
        defined_in = getattr(self.lookup(path), "__module__", None) or ""
        if defined_in == module:
            return (0, 0, path)
        if defined_in.startswith(module + "."):
            return (1, -module.count("."), path)
        return (2, path.count("."), path)

    def lookup(self, path: str) -> Any:
        """The object at ``path`` (importing its module), or None."""
        parts = path.split(".")
        for split in range(len(parts), 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:split]))
            except ImportError:
                continue
            for attribute in parts[split:]:
                if not hasattr(obj, attribute):
                    return None
                obj = getattr(obj, attribute)
            return obj
        return None

    def in_package(self, path: str) -> bool:
        return path == self.package or path.startswith(self.package + ".")

    def documented(self, path: str) -> bool:
        """True iff ``path`` can be the target of a cross-reference on the site."""
        if not self.in_package(path) or _is_private(path):
            return False
        if self.inventory is not None:
            return path in self.inventory
        if self.lookup(path) is not None:
            return True
        owner, _, member = path.rpartition(".")
        cls = self.lookup(owner)  # dataclass fields and annotated attributes have no class attribute
        annotations = {k for c in getattr(cls, "__mro__", ()) for k in getattr(c, "__annotations__", {})}
        return isinstance(cls, type) and member in annotations

    def primary(self, path: str) -> bool:
        return self.inventory is None or self.inventory.get(path) == 1

    def aliases(self, path: str) -> list[str]:
        """``path`` and the public paths of the same object (for ``a.B.c``: of ``a.B``, plus ``.c``)."""
        found = [path]
        parts = path.split(".")
        for split in range(len(parts), 0, -1):
            obj = self.lookup(".".join(parts[:split]))
            if obj is not None and id(obj) in self.by_object:
                rest = "".join(f".{part}" for part in parts[split:])
                found += [alias + rest for alias in self.by_object[id(obj)]]
                break
        return list(dict.fromkeys(found))


@dataclass
class Outcome:
    """The rewrite of one role."""

    file: str
    line: int
    role: str
    replacement: str
    target: str | None  # None: plain code
    note: str = ""  # why it is plain: "" (linked), "external" or a warning


def resolve(role: Role, context: ModuleContext | None, line: int, index: Index) -> tuple[str | None, str]:
    """The cross-reference target of ``role`` at ``line`` of the file of ``context``; (None, why) if none.

    The first candidate (see the module docstring) with a documented path wins; among the documented
    paths of that one object, the inventory's own heading of the object is preferred.
    """
    if not role.link:
        return None, "external"
    head, _, rest = role.target.partition(".")
    suffix = f".{rest}" if rest else ""
    candidates: list[str] = []
    if index.in_package(role.target):
        if index.documented(role.target):
            return role.target, ""
        candidates.append(role.target)
    else:
        if context is not None:
            candidates += [f"{cls}.{role.target}" for cls in context.enclosing_classes(line)]
            if head in context.defined and context.module:
                candidates.append(f"{context.module}.{role.target}")
            if head in context.imported:
                candidates.append(context.imported[head] + suffix)
        exported = index.by_name.get(head, [])
        if len({id(index.lookup(path)) for path in exported}) > 1:
            exported = []  # one name, several objects: only the module's own names and imports decide
        candidates += [path + suffix for path in exported]
    if not candidates:
        if head in vars(builtins) or ("." in role.target and importlib.util.find_spec(head) is not None):
            return None, "external"  # a builtin (ValueError) or another package (numpy.ndarray)
        return None, "no such name in the module, its imports or the package's public names"
    if not any(index.in_package(candidate) for candidate in candidates):
        return None, "external"
    tried: list[str] = []
    for candidate in dict.fromkeys(candidates):
        aliases = index.aliases(candidate)
        tried += aliases
        documented = [path for path in aliases if index.documented(path)]
        if documented:
            return next((path for path in documented if index.primary(path)), documented[0]), ""
    return None, "not documented on the site (tried " + ", ".join(dict.fromkeys(tried)) + ")"


def convert_text(
    text: str, context: ModuleContext | None, first_line: int, index: Index, file: str
) -> tuple[str, list[Outcome]]:
    """Rewrite every role of ``text`` (which starts at line ``first_line`` of ``file``)."""
    outcomes: list[Outcome] = []

    def replace(match: re.Match[str]) -> str:
        role = Role.parse(match["kind"], match["body"])
        line = first_line + text.count("\n", 0, match.start())
        target, note = resolve(role, context, line, index)
        replacement = role.plain() if target is None else role.reference(target)
        outcomes.append(Outcome(file, line, match[0], replacement, target, note))
        return replacement

    return ROLE.sub(replace, text), outcomes


def module_name(path: Path) -> str | None:
    """Dotted module name of a ``.py`` file inside a package (folders with ``__init__.py``), else None."""
    path = path.resolve()
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts) if (path.parent / "__init__.py").is_file() else None


def _docstring_starts(tree: ast.AST, lines: list[str]) -> set[tuple[int, int]]:
    """(line, column in characters) of every string that is a statement of its own (docstrings)."""
    starts = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            line = lines[node.lineno - 1].encode("utf-8")
            starts.add((node.lineno, len(line[: node.col_offset].decode("utf-8"))))
    return starts


def convert_python(
    source: str, path: Path, index: Index, line_length: int = LINE_LENGTH
) -> tuple[str, list[Outcome]]:
    """Rewrite the roles in the docstrings and comments of a Python source file, rewrapping long lines."""
    lines = source.splitlines(keepends=True)
    context = ModuleContext.from_source(source, module_name(path), path.name == "__init__.py")
    docstrings = _docstring_starts(ast.parse(source), lines)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    edits: list[tuple[int, int, str]] = []
    outcomes: list[Outcome] = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        comment = token.type == tokenize.COMMENT
        if comment or (token.type == tokenize.STRING and token.start in docstrings):
            row, column = token.start
            new, found = convert_text(token.string, context, row, index, str(path))
            if found:
                changed = {outcome.line - row for outcome in found}
                # Measure and wrap the lines as they stand in the file: the token starts at ``column``.
                block = " " * column + new
                block = wrap_comment(block, line_length) if comment else rewrap(block, changed, line_length)
                edits.append(
                    (offsets[row - 1] + column, offsets[token.end[0] - 1] + token.end[1], block[column:])
                )
                outcomes += found
    for start, end, new in reversed(edits):
        source = source[:start] + new + source[end:]
    return source, outcomes


def convert_markdown(text: str, path: Path, index: Index) -> tuple[str, list[Outcome]]:
    """Rewrite the roles of a Markdown file outside fenced code blocks."""
    out: list[str] = []
    outcomes: list[Outcome] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match["fence"]
        elif fence is not None and match and match["fence"].startswith(fence):
            fence = None
        elif fence is None:
            line, found = convert_text(line, None, number, index, str(path))
            outcomes += found
        out.append(line)
    return "".join(out), outcomes


_BACKTICKS = re.compile(r"`+")


def _open_code_span(lines: list[str], index: int) -> str:
    """The backtick run of a code span still open where line ``index`` starts ("" if none).

    Code spans do not cross a blank line, so the scan starts after the last blank line before ``index``.
    """
    start = index
    while start > 0 and lines[start - 1].strip():
        start -= 1
    fence = ""
    for line in lines[start:index]:
        for run in _BACKTICKS.findall(line):
            if not fence:
                fence = run
            elif run == fence:
                fence = ""
    return fence


def _split_point(line: str, limit: int, start: int, fence: str = "") -> int | None:
    """The last space at or before ``limit`` and after ``start`` to break ``line`` at, or None.

    Spaces inside link brackets never qualify; spaces inside code spans (``fence``: the backticks of one
    open where the line starts) only when no other does.
    """
    depth, best, best_in_code = 0, None, None
    position = 0
    while position <= min(limit, len(line) - 1):
        char = line[position]
        if char == "`":
            run = _BACKTICKS.match(line, position)
            assert run is not None
            if not fence:
                fence = run[0]
            elif run[0] == fence:
                fence = ""
            position += len(run[0])
            continue
        if char == "[" and not fence:
            depth += 1
        elif char == "]" and not fence:
            depth = max(depth - 1, 0)
        elif char == " " and depth == 0 and position > start and line[position - 1] != " ":
            if fence:
                best_in_code = position
            else:
                best = position
        position += 1
    return best if best is not None else best_in_code


_ITEM = re.compile(r"^\s*(?:[-*+]\s|\d+\.\s|>>>|\.\.\.|[\w*]+(?:\s*\([^)]*\))?:\s)")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+\.)\s+")
_SECTION = re.compile(r"^\s*[A-Z][A-Za-z ]*:\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def rewrap(block: str, changed: Iterable[int], limit: int = LINE_LENGTH) -> str:
    """Rewrap a docstring (its text as placed in the file) where the lines ``changed`` got too long.

    The overflow of such a line moves to the start of the next line when that line continues the same
    paragraph (it is not blank, not a list item, section heading or argument, and not the closing quotes),
    which may push that line over in turn; otherwise it becomes a new line, indented like a continuation.
    """
    lines = block.split("\n")
    for number in sorted(set(changed), reverse=True):
        index = number
        while 0 <= index < len(lines) and len(lines[index]) > limit:
            line = lines[index]
            split = _split_point(line, limit, _indent(line), _open_code_span(lines, index))
            if split is None:
                break
            head, overflow = line[:split].rstrip(), line[split + 1 :].lstrip()
            following = lines[index + 1] if index + 1 < len(lines) else ""
            stripped = following.lstrip()
            continues = (
                stripped
                and _indent(following) >= _indent(line)
                and not _ITEM.match(following)
                and not _SECTION.match(following)
                and not stripped.startswith(('"""', "'''", "```", "|"))
            )
            lines[index] = head
            if continues:
                lines[index + 1] = " " * _indent(following) + overflow + " " + stripped
            else:
                if bullet := _BULLET.match(line):
                    indent = len(bullet[0])
                elif _ITEM.match(line):
                    indent = _indent(line) + 4  # the description of an argument continues deeper
                else:
                    indent = _indent(line)
                lines.insert(index + 1, " " * indent + overflow)
            index += 1
    return "\n".join(lines)


def wrap_comment(line: str, limit: int = LINE_LENGTH) -> str:
    """Split a comment (as placed in the file) longer than ``limit`` into comment lines of the same start."""
    column = len(line) - len(line.lstrip(" "))
    marker = re.match(r"#+:?[ \t]*", line[column:])
    prefix = " " * column + (marker[0] if marker else "# ")
    out = []
    while len(line) > limit and (split := _split_point(line, limit, len(prefix))) is not None:
        out.append(line[:split].rstrip())
        line = prefix + line[split + 1 :].lstrip()
    return "\n".join([*out, line])


def convert_file(path: Path, index: Index, line_length: int = LINE_LENGTH) -> tuple[str, str, list[Outcome]]:
    """(old text, new text, outcomes) of one ``.py`` or ``.md`` file."""
    old = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        new, outcomes = convert_python(old, path, index, line_length)
    else:
        new, outcomes = convert_markdown(old, path, index)
    return old, new, outcomes


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in (".py", ".md") and p.is_file())
        else:
            yield path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help=".py / .md files or folders")
    parser.add_argument("--inventory", type=Path, help="objects.inv of a build of the site")
    parser.add_argument("--src", type=Path, default=REPO_ROOT / "src", help="folder holding the package")
    parser.add_argument("--package", default=PACKAGE)
    parser.add_argument("--line-length", type=int, default=LINE_LENGTH)
    parser.add_argument(
        "--check", action="store_true", help="report, do not write; exit 1 if a file would change"
    )
    args = parser.parse_args(argv)
    if str(args.src.resolve()) not in sys.path:
        sys.path.insert(0, str(args.src.resolve()))
    inventory = read_inventory(args.inventory) if args.inventory else None
    index = Index(args.package, inventory)
    outcomes: list[Outcome] = []
    changed_files = 0
    for path in iter_files(args.paths):
        old, new, found = convert_file(path, index, args.line_length)
        outcomes += found
        if new != old:
            changed_files += 1
            if not args.check:
                path.write_text(new, encoding="utf-8")
    for outcome in outcomes:
        if outcome.target is None and outcome.note != "external":
            where = f"{outcome.file}:{outcome.line}"
            print(
                f"{where}: warning: {outcome.role} -> {outcome.replacement}: {outcome.note}", file=sys.stderr
            )
    linked = sum(o.target is not None for o in outcomes)
    external = sum(o.note == "external" for o in outcomes)
    warned = len(outcomes) - linked - external
    verb = "would change" if args.check else "changed"
    print(
        f"{len(outcomes)} roles: {linked} cross-references, {external} plain code (other packages or !), "
        f"{warned} plain code with a warning; {verb} {changed_files} files"
    )
    if inventory is None and outcomes:
        print(
            "without --inventory, links to objects the API pages do not show (no docstring) may not resolve"
        )
    return 1 if args.check and changed_files else 0


if __name__ == "__main__":
    sys.exit(main())
