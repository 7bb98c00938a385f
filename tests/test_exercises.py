"""Exercises: every solution passes its own checker, and no answer is given away outside a solution.

Convention (book/00_how_to_use and chapters 01-05): an exercise is a question (markdown), a code cell
that defines ``check_exN`` and calls it with the reader's variable (``my_answer = None`` until the
reader fills it in), and a ``:class: dropdown`` admonition whose fenced ``python`` block is the
reference solution, ending with a call of the checker. Checkers print ``✓`` on success and ``✗``
otherwise; given ``None`` they print a "fill in my_answer" hint and do not fail the build.

Two tests:

* ``test_no_answer_outside_solutions`` (static, fast): at the top level of every code cell, a checker
  may only be called with names that the same cell sets to ``None`` (or a tuple of ``None``).
* ``test_solutions_pass_their_checkers`` (executes the notebook in tiny mode): each solution block
  is run in the kernel right after its dropdown, and its output must contain ``✓`` and no ``✗``; each
  checker cell, run as shipped (``my_answer = None``), must print the "fill in my_answer" hint.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
# The chapters whose every exercise must come with an executable solution (issue 13).
SOLVED = [p for p in NOTEBOOKS if p.name[:2] in {"00", "01", "02", "03", "04", "05", "06", "07"}]
CHECKER = re.compile(r"^_?check(_ex\d+)?$")   # check, _check, check_ex1, ...
_DROPDOWN = re.compile(r"(?P<fence>:{3,}|`{3,})\{admonition\}[^\n]*\n(?P<body>.*?)(?P=fence)(?!\S)", re.S)
_PYBLOCK = re.compile(r"^(?P<fence>`{3,})(?:python|py|\{code-cell\}\s*ipython3)\s*\n(?P<code>.*?)^(?P=fence)\s*$",
                      re.S | re.M)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _python(source: str) -> str:
    """Cell source with IPython magics/shell lines turned into Python (as the kernel does), for ``ast``."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _none_like(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(_none_like(e) for e in node.elts)
    return False


def _top_level_checker_calls(tree: ast.Module) -> list[ast.Call]:
    """Calls of ``check*`` functions that are not inside a def/lambda (i.e. run when the cell runs)."""
    calls: list[ast.Call] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and CHECKER.match(node.func.id):
            calls.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return calls


def spoiled_calls(source: str) -> list[str]:
    """Checker calls in a code cell whose arguments are not reader variables still set to None."""
    tree = ast.parse(_python(source))
    none_names: dict[str, int] = {}          # name -> line of its last top-level "name = None"
    assigned: dict[str, int] = {}            # name -> line of its last top-level assignment of any kind
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            for tgt in stmt.targets:
                if isinstance(tgt, ast.Name):
                    assigned[tgt.id] = stmt.lineno
                    if _none_like(stmt.value):
                        none_names[tgt.id] = stmt.lineno
    bad = []
    for call in _top_level_checker_calls(tree):
        args = list(call.args) + [k.value for k in call.keywords]
        ok = bool(args) and all(
            isinstance(a, ast.Name) and a.id in none_names and none_names[a.id] == assigned[a.id]
            and none_names[a.id] < call.lineno for a in args)
        if not ok:
            bad.append(ast.get_source_segment(_python(source), call) or ast.dump(call))
    return bad


def solutions(markdown: str) -> list[str]:
    """The fenced python blocks inside ``:class: dropdown`` admonitions of a markdown cell."""
    out = []
    for m in _DROPDOWN.finditer(markdown):
        body = m.group("body")
        if ":class: dropdown" not in body:
            continue
        out.extend(b.group("code") for b in _PYBLOCK.finditer(body))
    return out


def _calls_checker(code: str) -> bool:
    return bool(_top_level_checker_calls(ast.parse(_python(code))))


# ---------------------------------------------------------------------------------------------------------
# the helpers themselves can fail (tests that cannot fail are worthless)


def test_helpers_detect_spoilers() -> None:
    assert spoiled_calls("check_ex1(2 ** 30)") == ["check_ex1(2 ** 30)"]
    assert spoiled_calls("my_answer = 42\ncheck_ex1(my_answer)")
    assert spoiled_calls("check_ex1(my_answer)")                         # not set to None in this cell
    assert spoiled_calls("my_answer = None\nmy_answer = 3\ncheck(my_answer)")
    assert not spoiled_calls("def check_ex1(a):\n    _check(a, 3)\nmy_answer = None\ncheck_ex1(my_answer)")
    assert not spoiled_calls("my_answer = (None, None)\ncheck(my_answer)")
    assert not spoiled_calls("check_against_hamlib('vq', step, x)")          # a helper, not an exercise checker
    md = ":::{admonition} Solution\n:class: dropdown\ntext\n```python\nmy_answer = 1\ncheck_ex1(my_answer)\n```\n:::\n"
    assert solutions(md) == ["my_answer = 1\ncheck_ex1(my_answer)\n"]
    assert solutions(md.replace(":class: dropdown\n", "")) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_answer_outside_solutions(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    bad = [(i, call) for i, cell in enumerate(nb.cells) if cell.cell_type == "code" for call in spoiled_calls(cell.source)]
    assert not bad, (f"{path.name}: checkers called with an answer outside a solution dropdown "
                     f"(use `my_answer = None` and move the reference call into the dropdown): {bad}")


@pytest.mark.parametrize("path", SOLVED, ids=[p.name for p in SOLVED])
def test_every_exercise_has_a_solution(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    checker_cells = [c for c in nb.cells if c.cell_type == "code" and _top_level_checker_calls(ast.parse(_python(c.source)))]
    sols = [s for c in nb.cells if c.cell_type == "markdown" for s in solutions(c.source) if _calls_checker(s)]
    assert checker_cells, f"{path.name}: no exercises with checkers"
    called = {c.func.id for cell in checker_cells for c in _top_level_checker_calls(ast.parse(_python(cell.source)))}
    solved = {c.func.id for s in sols for c in _top_level_checker_calls(ast.parse(_python(s)))}
    assert called <= solved, f"{path.name}: checkers without a solution that calls them: {sorted(called - solved)}"


@pytest.mark.notebook
@pytest.mark.parametrize("path", SOLVED, ids=[p.name for p in SOLVED])
def test_solutions_pass_their_checkers(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("HAMLIB_TINY", "1")
    # Run folders of their own: the book build may be training the same chapter in book/runs at this moment
    # (pytest -n 2), and a run folder is locked against a second trainer.
    monkeypatch.setenv("HAMLIB_RUNS", str(tmp_path / "runs"))
    nb = nbformat.read(path, as_version=4)
    cells, probes = [], []
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type == "markdown":
            for code in solutions(cell.source):
                if _calls_checker(code):
                    probe = nbformat.v4.new_code_cell(code)
                    cells.append(probe)
                    probes.append(probe)
    assert probes, f"{path.name}: no solution code in any dropdown"
    checker_cells = [c for c in cells if c.cell_type == "code" and not any(c is p for p in probes)
                     and _top_level_checker_calls(ast.parse(_python(c.source)))]
    nb.cells = cells
    client = NotebookClient(nb, kernel_name="python3", timeout=600, allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    failures = []
    for probe in probes:
        text = _ANSI.sub("", "".join(o.get("text", "") for o in probe.outputs if o.get("output_type") == "stream"))
        if "✓" not in text or "✗" in text:
            failures.append(f"--- solution ---\n{probe.source}\n--- printed ---\n{text}")
    for cell in checker_cells:                # the reader's view: no answer yet -> a hint, not a verdict or an error
        text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        if "fill in my_answer" not in text or "✓" in text:
            failures.append(f"--- checker cell (my_answer = None) ---\n{cell.source}\n--- printed ---\n{text}")
    assert not failures, f"{path.name}: solutions that fail their own checkers:\n" + "\n".join(failures)
