"""The package's dependency rules (README "Layout", ../shared/reference/architecture.md), enforced.

- The core (``md``, ``layers``, ``hamburger``, ``attention``) imports with matplotlib, ipywidgets,
  scikit-learn, tqdm and PIL blocked: coursework can use it with torch alone.
- ``seg`` and ``gan`` never import each other; what they share lives in ``train``.
- Only ``viz`` imports matplotlib or ipywidgets, lazy (function-level) imports included.
- Nothing in ``md`` imports the applications, the plots or the book.
- Library code never knows this machine's layout (no ``../shared`` paths).

The static checks read every module's AST, so an import hidden inside a function counts too.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "hamlib"
CORE = ("hamlib.md", "hamlib.layers", "hamlib.hamburger", "hamlib.attention")
BLOCKED = ("matplotlib", "ipywidgets", "sklearn", "tqdm", "PIL")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, name: str | None = None) -> set[str]:
    """Absolute names of every module ``path`` imports, anywhere in the file (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = (name or _module_name(path)).split(".")
    if path.name != "__init__.py":
        pkg = pkg[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[:len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                found.add(mod)
                if not node.module:  # from . import x  -> package.x
                    found.update(f"{mod}.{a.name}" for a in node.names)
            elif node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _in(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_static_scan_sees_lazy_imports(tmp_path):
    """The checker itself: an import inside a function body is found (the rule covers lazy imports)."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    import matplotlib.pyplot as plt\n    from PIL import Image\n")
    assert {"matplotlib.pyplot", "PIL", "PIL.Image"} <= _imports(f, "hamlib.m")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_only_viz_imports_plotting(name):
    if _in(name, "hamlib.viz"):
        return
    bad = sorted(m for m in _imports(MODULES[name]) if _in(m, "matplotlib") or _in(m, "ipywidgets"))
    assert not bad, f"{name} imports {bad}; figures and widgets belong in hamlib.viz"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _in(n, "hamlib.seg") or _in(n, "hamlib.gan")))
def test_seg_and_gan_never_import_each_other(name):
    other = "hamlib.gan" if _in(name, "hamlib.seg") else "hamlib.seg"
    bad = sorted(m for m in _imports(MODULES[name]) if _in(m, other))
    assert not bad, f"{name} imports {bad}; share code through hamlib.train instead"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if any(_in(n, c) for c in CORE)))
def test_core_imports_only_torch_and_core(name):
    allowed_hamlib = CORE + ("hamlib",)
    for m in _imports(MODULES[name]):
        top = m.split(".")[0]
        if top == "hamlib":
            assert any(_in(m, c) for c in CORE) or m == "hamlib", \
                f"{name} imports {m}; the core may import only {allowed_hamlib}"
        else:
            assert top in {"torch", "__future__", "typing", "math", "dataclasses", "functools", "warnings",
                           "collections", "contextlib", "itertools", "enum", "abc", "numbers", "os", "re",
                           "types"}, f"{name} imports {m}; the core imports torch and the standard library only"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not _in(n, "hamlib.viz")))
def test_library_never_knows_this_machines_layout(name):
    text = MODULES[name].read_text()
    assert "../shared" not in text and "REPO_ROOT" not in text, \
        f"{name} refers to this machine's layout; take data from HAMLIB_DATA or an argument"


def test_core_imports_with_extras_blocked():
    """Import the core in a fresh interpreter where matplotlib, ipywidgets, sklearn, tqdm and PIL cannot load."""
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            raise ImportError('blocked for this test: ' + name)
        return None
sys.meta_path.insert(0, Block())
import torch, hamlib
from hamlib import md, layers, hamburger, attention
x = torch.randn(1, 16, 8, 8)
y = hamlib.Hamburger(in_channels=16, ham_channels=16, md='nmf', R=4)(x, generator=torch.Generator().manual_seed(0))
assert y.shape == x.shape
loaded = sorted(m for m in sys.modules if m.split('.')[0] in {BLOCKED!r})
assert not loaded, loaded
print('ok')
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
