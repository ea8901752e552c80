"""Screenshots of the built documentation site in headless Chromium, with the network cut off.

Serves a built site on 127.0.0.1, opens the main pages (and every page with a mermaid diagram) in
headless Chromium where every other host fails to resolve, saves one PNG per page into a folder and
checks each page: every mermaid diagram was rendered to SVG, and no request left the local server.

    mkdocs build --strict -d /tmp/site
    python docs/tools/screenshot.py /tmp/site /tmp/shots

The exit status is 1 when a check fails. Chromium is Debian's package (``apt-get install chromium``);
pass ``--chromium`` for another binary. The browser is driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``), so the script needs nothing beyond the standard library; the protocol is
needed because material draws each diagram into a closed shadow root, which ``--dump-dom`` does not show.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import functools
import http.server
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
MAIN_PAGES = ("", "quickstart/", "concepts/", "does-it-help/", "api/adapters/", "api/compat/")
WINDOW = (1280, 2000)
RENDER_TIMEOUT_S = 30.0
# material's header asks GitHub for the repository's stars and latest release (repo_url in mkdocs.yml);
# offline the request fails and the header shows the plain link, so it is reported but not an error.
OPTIONAL_REQUESTS = re.compile(r"^https://api\.github\.com/repos/")
_MERMAID_BLOCK = re.compile(r'<(?:pre|div)\b[^>]*\bclass="[^"]*\bmermaid\b')


def chromium_args(chromium: str, profile: Path) -> list[str]:
    """Command line of a headless Chromium that reaches 127.0.0.1 only."""
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        # Offline: every host name but the local server's address fails to resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--remote-debugging-pipe",
        "about:blank",
    ]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(site_dir: Path) -> Iterator[str]:
    """Serve ``site_dir`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class Browser:
    """One headless Chromium driven over the DevTools protocol (NUL-separated JSON on fds 3 and 4)."""

    def __init__(self, chromium: str = CHROMIUM) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="visattn-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def remap() -> None:  # runs in the child: the protocol pipes must be fds 3 (in) and 4 (out)
            read_end = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self._process = subprocess.Popen(
            chromium_args(chromium, Path(self._profile.name)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=remap,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._to_browser)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._from_browser)
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                return None
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        result: dict[str, Any] = json.loads(message)
        return result

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        """Run one protocol command and return its result; events that arrive meanwhile go to ``events``."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive(RENDER_TIMEOUT_S)
            if reply is None:
                raise TimeoutError(f"no reply to {method}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float) -> bool:
        """Wait for the next event named ``method``; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self.events):
                if event.get("method") == method:
                    del self.events[index]
                    return True
            left = deadline - time.monotonic()
            reply = self._receive(left) if left > 0 else None
            if reply is None:
                return False
            self.events.append(reply)

    def new_page(self, width: int, height: int) -> tuple[str, str]:
        """Open a tab of ``width x height`` CSS pixels; returns its target and session ids."""
        target: str = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session: str = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.send(f"{domain}.enable", session=session)
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.send("Emulation.setDeviceMetricsOverride", metrics, session=session)
        return target, session


@dataclass
class PageReport:
    """What one page looked like in the browser."""

    url: str
    diagrams: int  # mermaid blocks in the page as served
    svgs: list[str] = field(default_factory=list)  # markup of each diagram's rendered <svg>
    external: list[str] = field(default_factory=list)  # requests that did not go to the local server
    optional: list[str] = field(default_factory=list)  # the OPTIONAL_REQUESTS among them
    errors: list[str] = field(default_factory=list)  # uncaught JavaScript exceptions

    @property
    def ok(self) -> bool:
        return len(self.svgs) == self.diagrams and not self.external and not self.errors


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for key in ("children", "shadowRoots"):
        for child in node.get(key, ()):
            yield from _walk(child)
    if "contentDocument" in node:
        yield from _walk(node["contentDocument"])


def _diagram_svgs(browser: Browser, session: str) -> list[int]:
    """Node ids of the <svg> elements inside the shadow roots of material's ``div.mermaid`` containers."""
    root = browser.send("DOM.getDocument", {"depth": -1, "pierce": True}, session=session)["root"]
    found = []
    for node in _walk(root):
        attributes = node.get("attributes", [])
        classes = dict(zip(attributes[::2], attributes[1::2])).get("class", "").split()
        if node.get("localName") == "div" and "mermaid" in classes:
            for shadow in node.get("shadowRoots", ()):
                found += [n["nodeId"] for n in _walk(shadow) if n.get("localName") == "svg"][:1]
    return found


def check_page(browser: Browser, url: str, html: str, png: Path | None = None) -> PageReport:
    """Load ``url`` (whose served HTML is ``html``), wait for its diagrams, optionally save a screenshot."""
    report = PageReport(url=url, diagrams=len(_MERMAID_BLOCK.findall(html)))
    target, session = browser.new_page(*WINDOW)
    origin = "{0.scheme}://{0.netloc}/".format(urllib.parse.urlsplit(url))
    browser.events.clear()
    browser.send("Page.navigate", {"url": url}, session=session)
    if not browser.wait_event("Page.loadEventFired", RENDER_TIMEOUT_S):
        report.errors.append("the page did not finish loading")
    deadline = time.monotonic() + RENDER_TIMEOUT_S
    svg_ids = _diagram_svgs(browser, session)
    while len(svg_ids) < report.diagrams and time.monotonic() < deadline:
        time.sleep(0.2)
        svg_ids = _diagram_svgs(browser, session)
    time.sleep(0.5)  # let the layout settle after the last diagram
    report.svgs = [
        browser.send("DOM.getOuterHTML", {"nodeId": node}, session=session)["outerHTML"] for node in svg_ids
    ]
    if png is not None:
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
        png.write_bytes(base64.b64decode(shot["data"]))
    for event in browser.events:
        params = event.get("params", {})
        if event.get("method") == "Network.requestWillBeSent":
            request_url = params["request"]["url"]
            if OPTIONAL_REQUESTS.match(request_url):
                report.optional.append(request_url)
            elif not request_url.startswith((origin, "data:", "blob:")):
                report.external.append(request_url)
        elif event.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            report.errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
    browser.send("Target.closeTarget", {"targetId": target})
    return report


def mermaid_pages(site_dir: Path) -> list[str]:
    """The pages of a built site (paths relative to it, ``""`` for the home page) with a mermaid diagram."""
    pages = []
    for index in sorted(site_dir.rglob("index.html")):
        if _MERMAID_BLOCK.search(index.read_text(encoding="utf-8")):
            page = index.parent.relative_to(site_dir).as_posix()
            pages.append("" if page == "." else page + "/")
    return pages


def pages_to_check(site_dir: Path, extra: Iterable[str] = ()) -> list[str]:
    """The main pages, every page with a mermaid diagram, and ``extra``."""
    return list(dict.fromkeys([*MAIN_PAGES, *mermaid_pages(site_dir), *extra]))


def png_name(page: str) -> str:
    return (page.strip("/").replace("/", "-") or "index") + ".png"


def run(
    site_dir: Path, out_dir: Path | None, chromium: str = CHROMIUM, pages: Iterable[str] | None = None
) -> list[PageReport]:
    """Check ``pages`` (default: ``pages_to_check``) of a built site; with ``out_dir``, save screenshots."""
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    reports = []
    with serve(site_dir) as base, Browser(chromium) as browser:
        for page in pages_to_check(site_dir) if pages is None else pages:
            html = (site_dir / page / "index.html").read_text(encoding="utf-8")
            png = out_dir / png_name(page) if out_dir is not None else None
            reports.append(check_page(browser, base + page, html, png))
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="a built site (mkdocs build -d SITE)")
    parser.add_argument("out", type=Path, help="folder for the PNGs (created)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or CHROMIUM, help="browser binary")
    parser.add_argument("--page", action="append", default=[], help="another page, e.g. api/losses/")
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        parser.error(f"{args.site} is not a built site (no index.html); run mkdocs build -d {args.site}")
    reports = run(args.site, args.out, args.chromium, pages_to_check(args.site, args.page))
    for report in reports:
        status = "ok" if report.ok else "FAILED"
        line = f"{status:6} {report.url}  diagrams rendered {len(report.svgs)}/{report.diagrams}"
        print(line + "".join(f"\n       external request: {u}" for u in report.external), end="")
        print("".join(f"\n       error: {e}" for e in report.errors))
    optional = sorted({url for report in reports for url in report.optional})
    if optional:
        print("requests that fail offline without harm (repository facts in the header):", *optional)
    print(f"screenshots in {args.out}")
    return 0 if all(report.ok for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
