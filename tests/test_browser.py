"""The built smoke book in headless Chromium: each results page shows its tables, figures and widgets,
logs no console error except the known, harmless one of Jupyter Book 1 (THEBE_JS_URL), and its explorer
responds: choosing another option of a dropdown, with the keyboard as a reader would, shows another view."""

import base64
import json
import os
import re
import select
import subprocess
import time
from pathlib import Path

import pytest

from kdnb.report.book import NOTEBOOKS

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
CONSOLE = re.compile(r':CONSOLE[:(]\d+\)?\] "(.*)", source: (\S+)')
ALLOWED = ("Identifier 'THEBE_JS_URL' has already been declared",)
ERROR_WORDS = re.compile(r"error|uncaught|failed|exception|cannot|not defined|refused", re.I)
EXPLORER_PAGES = [n for n in NOTEBOOKS if n != "summary"]  # the claims page has no explorer


def chromium(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"  # a fresh user data dir per call
    return subprocess.run([str(CHROMIUM), *FLAGS, "--virtual-time-budget=15000", f"--user-data-dir={profile}", *args,
                           url], capture_output=True, text=True, timeout=180)


def console_errors(stderr: str) -> list[str]:
    msgs = [m.group(1) for m in CONSOLE.finditer(stderr)]
    return [m for m in msgs if ERROR_WORDS.search(m) and not any(a in m for a in ALLOWED)]


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: commands
    on fd 3, replies on fd 4, NUL-separated JSON), so a test can press keys in a page; stdlib only."""

    def __init__(self, tmp: Path, size: str = "1280,2400"):
        to_r, self._to = os.pipe()
        self._from, from_w = os.pipe()

        def as_fd3_fd4() -> None:  # in the child: the pipe ends where Chromium looks for them
            a, b = os.dup(to_r), os.dup(from_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [str(CHROMIUM), *FLAGS, "--remote-debugging-pipe", f"--window-size={size}",
             f"--user-data-dir={tmp / 'profile-cdp'}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=as_fd3_fd4)
        os.close(to_r)
        os.close(from_w)
        self._next, self._buf, self.session, self.events = 0, b"", None, []

    def _receive(self, until: float, what: str) -> dict:
        """The next message from Chromium (a reply or an event)."""
        while b"\0" not in self._buf:
            left = until - time.monotonic()
            assert left > 0 and select.select([self._from], [], [], left)[0], f"timed out waiting for {what}"
            chunk = os.read(self._from, 1 << 20)
            assert chunk, f"Chromium closed the pipe while we waited for {what}"
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, timeout: float = 60, **params) -> dict:
        """Send one command (to the attached page once there is one) and return its result; events that
        arrive meanwhile are kept in ``events``."""
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._to, json.dumps(msg).encode() + b"\0")
        until = time.monotonic() + timeout
        while True:
            reply = self._receive(until, method)
            if reply.get("id") == self._next:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]
            self.events.append(reply.get("method"))

    def open(self, url: str, timeout: float = 120) -> None:
        """Load ``url`` in a new tab and wait for its load event."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable")
        self.events.clear()
        self.send("Page.navigate", url=url)
        until = time.monotonic() + timeout
        while "Page.loadEventFired" not in self.events:
            self.events.append(self._receive(until, f"{url} to load").get("method"))

    def js(self, expression: str, timeout: float = 60):
        """The value of a JavaScript expression in the page (promises awaited)."""
        res = self.send("Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True,
                        returnByValue=True)
        assert "exceptionDetails" not in res, res["exceptionDetails"]
        return res["result"].get("value")

    def key(self, key: str, code: int) -> None:
        """Press and release a key in the focused element, as a reader's keyboard would."""
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code,
                      nativeVirtualKeyCode=code)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except AssertionError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to)
        os.close(self._from)


# The first explorer of the page: the widget box holding its dropdowns; its "view" is what it shows
# besides the controls (images by their alt text and data, tables and text), as the reader sees it.
EXPLORER_JS = """
window.kdnbBox = () => document.querySelector('.cell_output .widget-dropdown').closest('.widget-vbox');
window.kdnbView = () => {
  const box = kdnbBox(), seen = [];
  box.querySelectorAll('img').forEach(i => { if (i.getClientRects().length)
    seen.push('img ' + i.alt + ' ' + i.src.length + ' ' + i.src.slice(-80)); });
  box.querySelectorAll('.widget-html-content, .jp-OutputArea-output').forEach(e => {
    if (e.getClientRects().length && !e.querySelector('img')) seen.push(e.innerText.trim()); });
  return seen;
};
window.kdnbSelects = () => [...kdnbBox().querySelectorAll('.widget-dropdown select')].map(s =>
  ({label: s.parentElement.innerText.trim().split('\\n')[0], index: s.selectedIndex,
    options: [...s.options].map(o => o.text.replace(/\\u00a0/g, ' '))}));  // ipywidgets shows spaces as NBSP
"""
READY_JS = """new Promise((ok, no) => { const t0 = Date.now(); const t = setInterval(() => {
  const dd = document.querySelector('.cell_output .widget-dropdown select');
  const box = dd && dd.closest('.widget-vbox');
  if (box && box.querySelector('img')) { clearInterval(t); ok(true); }
  else if (Date.now() - t0 > %d) { clearInterval(t); ok(false); } }, 200); })"""


def explore(url: str, tmp: Path, shot: Path | None = None, wait_s: float = 10) -> list[dict]:
    """Open ``url``, then for each dropdown of its first explorer that has a choice, focus it and press the
    down arrow (then the up arrow, to go back); returns, per dropdown, the option chosen and the visible view
    before and after (waiting up to ``wait_s`` for it to change)."""
    b = Browser(tmp)
    try:
        b.open(url)
        assert b.js(READY_JS % 90_000, timeout=120), "the explorer did not render (no dropdown with a view)"
        b.js(EXPLORER_JS)
        changes = []
        for i, sel in enumerate(b.js("kdnbSelects()")):
            if len(sel["options"]) < 2:
                continue
            before = b.js("kdnbView()")
            b.js(f"kdnbBox().querySelectorAll('.widget-dropdown select')[{i}].focus()")
            b.key("ArrowDown", 40)
            end, after = time.monotonic() + wait_s, before
            while time.monotonic() < end and after == before:
                time.sleep(0.2)
                after = b.js("kdnbView()")
            now = b.js("kdnbSelects()")[i]
            changes.append({"control": sel["label"], "index": now["index"], "option": now["options"][now["index"]],
                            "before": before, "after": after})
            b.key("ArrowUp", 38)  # back to the first option, so that each dropdown is tried from the same view
            end = time.monotonic() + wait_s
            while time.monotonic() < end and b.js("kdnbView()") != before:
                time.sleep(0.2)
        if shot is not None:
            box = b.js("(() => { kdnbBox().scrollIntoView(); const r = kdnbBox().getBoundingClientRect();"
                       " return {x: r.left, y: r.top, width: r.width, height: r.height}; })()")
            page = b.send("Page.getLayoutMetrics")["cssLayoutViewport"]  # the clip is in page coordinates
            clip = {**box, "x": box["x"] + page["pageX"], "y": box["y"] + page["pageY"], "scale": 1}
            png = b.send("Page.captureScreenshot", format="png", clip=clip)
            shot.write_bytes(base64.b64decode(png["data"]))
        return changes
    finally:
        b.close()


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_section_page_renders(smoke_book, smoke_html, name, tmp_path):
    page = smoke_html / "book" / f"{name}.html"
    assert page.is_file(), page
    dom = chromium(page.as_uri(), tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'class="kdnb-banner"' in html
    assert re.search(r'<table[^>]*class="kdnb-table', html), "no result table"
    assert re.search(r'<img[^>]+src="[^"]+\.png"', html), "no figure"
    if name in EXPLORER_PAGES:
        # rendered by the widget manager from the saved state: the static HTML holds only <script> tags
        assert re.search(r'class="[^"]*jupyter-widgets[^"]*widget-dropdown', html), "widget not rendered"
        assert re.search(r'<img[^>]+src="data:image/png;base64,', html), "no explorer view rendered"
    errors = console_errors(dom.stderr)
    assert not errors, errors
    shots = smoke_book / "build" / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    shot = chromium(page.as_uri(), tmp_path, "--window-size=1280,2400", f"--screenshot={shots / name}.png")
    assert shot.returncode == 0 and (shots / f"{name}.png").stat().st_size > 10_000


@pytest.mark.parametrize("name", EXPLORER_PAGES)
def test_explorer_responds_offline(smoke_book, smoke_html, name, tmp_path):
    """Every dropdown of the page's explorer, changed with the keyboard, changes the view to one that names
    the new choice: the views are precomputed and switched in the browser, with no kernel and no network.
    (A frozen snapshot, such as an ``interact`` saved at execution time, keeps showing the old view.)"""
    page = smoke_html / "book" / f"{name}.html"
    shots = smoke_book / "build" / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    changes = explore(page.as_uri(), tmp_path, shot=shots / f"{name}-explorer.png")
    assert changes, "no dropdown with more than one option"
    for c in changes:
        assert c["index"] == 1, f"{c['control']}: the down arrow did not choose the second option"
        assert c["after"] != c["before"], f"{c['control']} → {c['option']}: the view did not change"
        assert any(c["option"] in v for v in c["after"]), f"{c['control']} → {c['option']}: not shown {c['after']}"


def test_console_filter():
    log = ('[1:1:1126/080513.5:INFO:CONSOLE:63] "Uncaught SyntaxError: Identifier \'THEBE_JS_URL\' has already been '
           'declared", source: file:///x.html (63)\n'
           '[1:1:1126/080514.0:INFO:CONSOLE:1] "Got invalid theme mode: . Resetting to auto.", source: a.js (1)\n'
           '[1:1:1126/080514.3:INFO:CONSOLE(27)] "Uncaught ReferenceError: require is not defined", source: f.js (27)')
    assert console_errors(log) == ["Uncaught ReferenceError: require is not defined"]
