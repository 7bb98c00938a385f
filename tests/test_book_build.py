"""Quality gates on the built book: -W build, every page present, no error cells, links, screenshots.

The book is built once per test session (all tests of this file run in one pytest-xdist worker thanks to
``--dist loadfile``) into a temporary folder, executing every chapter in tiny mode, exactly as
``make book`` does.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 3600
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]

pytestmark = pytest.mark.book


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        files += [c["file"] for c in part["chapters"]]
    return files


TOC_FILES = _toc_files()


@pytest.fixture(scope="session")
def html_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    env = {**os.environ, "HAMLIB_TINY": "1"}
    proc = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(out), "-W", "--keep-going"],
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT, env=env)
    log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    if proc.returncode != 0:
        problems = [l for l in log.splitlines() if "WARNING" in l or "ERROR" in l or "Error" in l]
        pytest.fail(f"jupyter-book build -W failed (exit {proc.returncode}):\n" + "\n".join(problems[-40:]) +
                    "\n---- log tail ----\n" + log[-4000:], pytrace=False)
    return out / "_build" / "html"


def _page(html_dir: Path, toc_file: str) -> Path:
    return html_dir / (toc_file + ".html")


def test_every_toc_page_is_built(html_dir):
    missing = [f for f in TOC_FILES if not _page(html_dir, f).is_file()]
    assert not missing, f"pages missing from the build: {missing}"
    assert (html_dir / "index.html").is_file()


def test_no_error_output_cells(html_dir):
    bad = {}
    for f in TOC_FILES:
        text = _page(html_dir, f).read_text()
        hits = re.findall(r'class="[^"]*(?:output traceback|output error|highlight-ipythontb)[^"]*"', text)
        hits += re.findall(r"Traceback \(most recent call last\)", text)
        if hits:
            bad[f] = hits[:3]
    assert not bad, f"error outputs in the built pages: {bad}"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.scripts: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag in ("img", "script") and a.get("src"):
            self.links.append(a["src"])
            if tag == "script":
                self.scripts.append(a["src"])
        if tag == "link" and a.get("href"):
            self.links.append(a["href"])


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text())
    return p


def test_internal_links_resolve(html_dir):
    pages = [_page(html_dir, f) for f in TOC_FILES]
    parsed = {p.resolve(): _parse(p) for p in html_dir.rglob("*.html") if "_static" not in p.parts}
    broken = []
    for page in pages:
        for link in parsed[page.resolve()].links:
            u = urlparse(link)
            if u.scheme or link.startswith("//") or link.startswith("mailto:"):
                continue
            target = (page.parent / unquote(u.path)).resolve() if u.path else page.resolve()
            if not target.exists():
                broken.append(f"{page.name}: {link}")
            elif u.fragment and target.suffix == ".html" and target in parsed and u.fragment not in parsed[target].ids:
                broken.append(f"{page.name}: {link} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken)


def test_site_needs_no_cdn_and_widgets_have_their_manager(html_dir):
    for f in TOC_FILES:
        page = _page(html_dir, f)
        links = _parse(page)
        external = [s for s in links.scripts if urlparse(s).scheme in ("http", "https") or s.startswith("//")]
        assert not external, f"{page.name} loads scripts from the network: {external}"
        text = page.read_text()
        if "application/vnd.jupyter.widget-view+json" in text:
            assert any("_static/widgets/embed.js" in s for s in links.scripts), \
                f"{page.name} has widgets but does not load the vendored widget manager"
    assert (html_dir / "_static" / "widgets" / "embed.js").is_file()
    assert (html_dir / "_static" / "mathjax" / "tex-chtml.js").is_file()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.parametrize("toc_file", TOC_FILES)
def test_page_screenshot_is_not_blank_or_broken(html_dir, toc_file, tmp_path):
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's 'chromium'); the screenshot gate cannot run")
        pytest.skip("chromium not installed (apt-get install chromium)")
    page = _page(html_dir, toc_file)
    shots = html_dir.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    png = shots / (toc_file.replace("/", "_") + ".png")
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    subprocess.run([*common, "--window-size=1280,1600", f"--screenshot={png}", page.as_uri()],
                   capture_output=True, timeout=180)
    assert png.is_file() and png.stat().st_size > 10_000, f"no screenshot for {toc_file}"
    import matplotlib.image as mpimg

    img = mpimg.imread(png)[..., :3]
    ink = (img.mean(axis=-1) < 0.85).mean()          # fraction of non-background pixels
    assert img.std() > 0.05 and ink > 0.01, f"{toc_file}: page looks blank (std {img.std():.3f}, ink {ink:.3%})"
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180).stdout
    assert "<h1" in dom and "Traceback" not in dom, f"{toc_file}: no title or a traceback in the rendered page"
    if "\\(" in page.read_text() or "\\[" in page.read_text():
        assert "mjx-container" in dom, f"{toc_file}: equations were not typeset by MathJax"
