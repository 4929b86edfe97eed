"""The desktop lab in a real browser: the demo's "Linux desktop" scenario through the gateway and noVNC.

Headless Chromium (Debian's) opens the scenario; the test reads the noVNC
canvas's pixels until the remote desktop shows (the terminal window's light
background over the dark screen: a picture, not only a canvas element),
clicks into the terminal window inside the desktop and types a command that
writes a file, then finds that file in the lab's home; sends Ctrl+W from the
"Send keys" menu to bash there, and switches to a terminal of the same
lab with the "Connect to" selector and back.  It also sends text
through the page's clipboard box and pastes it in the lab (middle click),
and checks that no VNC password or endpoint appears in the page.  Further
tests: the read-only scenario, lab_resize_method reconnect, and a lab
suspended under the open page that comes back with the same shell.  Screenshots
go to the test output directory.

Skipped without Chromium, bubblewrap or TigerVNC, except where ``CI`` or
``HASTEXO_REQUIRE_BROWSER`` is set: there it fails.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest

from .test_browser import CHROMIUM, CHROMIUM_ARGS, demo  # noqa: F401 -- the demo fixture

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

#: The terminal window's background in demo/templates/linux-desktop.yaml (#f5f0dc).
TERMINAL_BG = (0xF5, 0xF0, 0xDC)

#: JS: where the terminal window is on the noVNC canvas, from its pixels: the bounding box of the
#: pixels of its background colour, in page coordinates, with their share of the canvas.
FIND_WINDOW = """([r, g, b]) => {
  const canvas = document.querySelector('.hastexo-desktop canvas');
  if (!canvas || !canvas.width) return null;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0, minX = 1e9, minY = 1e9, maxX = -1, maxY = -1;
  const colours = new Set();
  for (let i = 0, p = 0; i < data.length; i += 4, p += 1) {
    if (p % 97 === 0) colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    if (Math.abs(data[i] - r) < 8 && Math.abs(data[i + 1] - g) < 8 && Math.abs(data[i + 2] - b) < 8) {
      const x = p % canvas.width, y = Math.floor(p / canvas.width);
      n += 1; minX = Math.min(minX, x); maxX = Math.max(maxX, x); minY = Math.min(minY, y); maxY = Math.max(maxY, y);
    }
  }
  const box = canvas.getBoundingClientRect();
  const sx = box.width / canvas.width, sy = box.height / canvas.height;
  return {share: n / (canvas.width * canvas.height), colours: colours.size,
          x: box.left + (minX + maxX) / 2 * sx, y: box.top + (minY + maxY) / 2 * sy,
          width: (maxX - minX) * sx, height: (maxY - minY) * sy};
}"""

#: JS: a cheap fingerprint of the canvas's pixels.
FINGERPRINT = """() => {
  const c = document.querySelector('.hastexo-desktop canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] + d[i + 1] * 7 + d[i + 2] * 13) | 0;
  return h;
}"""


#: JS: send RFB KeyEvents (down and up) for each character of the text (\r: Return) on the page's websocket.
FORGE_KEYS = """(text) => {
  for (const ch of text) {
    const keysym = ch === '\\r' ? 0xff0d : ch.charCodeAt(0);
    for (const down of [1, 0]) {
      const message = new Uint8Array(8);
      message[0] = 4; message[1] = down;
      new DataView(message.buffer).setUint32(4, keysym);
      window.labSocket.send(message);
    }
  }
}"""


def require_desktop():
    if shutil.which("Xtigervnc") and shutil.which("twm") and shutil.which("xterm"):
        return
    message = "TigerVNC, twm or xterm is not installed: run `make system-deps` as root"
    if os.environ.get("CI") or os.environ.get("HASTEXO_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


def find_in_labs(labs: str, name: str) -> list[str]:
    found = []
    for dirpath, _dirnames, filenames in os.walk(labs):
        if name in filenames:
            found.append(os.path.join(dirpath, name))
    return found


def wait_for_file(labs: str, name: str, content: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in find_in_labs(labs, name):
            with open(path) as handle:
                if handle.read().strip() == content:
                    return path
        time.sleep(0.3)
    raise AssertionError(f"{name} with {content!r} did not appear in the lab")


def narrower(page) -> None:
    """Make the unit 340 px narrower and wait until the remote desktop has followed (its canvas is narrower)."""
    width = page.evaluate("document.querySelector('.hastexo-desktop canvas').width")
    page.set_viewport_size({"width": 760, "height": 900})
    page.wait_for_function(
        f"(document.querySelector('.hastexo-desktop canvas') || {{width: 1e9}}).width < {width - 200}",
        timeout=20_000,
    )


def test_learner_sees_and_uses_a_linux_desktop(demo, output_dir):  # noqa: F811
    require_desktop()
    from playwright.sync_api import sync_playwright

    url = demo["url"].replace("/scenario/hastexo.0/", "/scenario/hastexo.1/") + "?student=desktop-learner"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        sockets = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        started = time.monotonic()
        try:
            page.goto(url)
            page.evaluate(
                "document.querySelectorAll('body *').forEach((el) => {"
                " if (['fixed', 'sticky'].includes(getComputedStyle(el).position)) el.style.position = 'static'; })"
            )
            page.wait_for_selector('.hastexo-xblock[data-state="connected"]', timeout=90_000)
            assert page.locator(".hastexo-terminal").is_hidden()
            assert page.locator(".hastexo-desktop-tools").is_visible()

            # The picture: the terminal window's light background, a sizeable part of the screen, over a dark one.
            page.wait_for_function(
                f"(({FIND_WINDOW})({list(TERMINAL_BG)}) || {{share: 0}}).share > 0.05", timeout=60_000
            )
            window = page.evaluate(f"({FIND_WINDOW})({list(TERMINAL_BG)})")
            assert window["share"] < 0.9 and window["width"] > 200 and window["height"] > 100, window
            shown = time.monotonic() - started
            page.locator(".hastexo-xblock").screenshot(path=os.path.join(output_dir, "browser-desktop-shown.png"))

            # A click into the terminal window inside the desktop, and typed text, reach the lab.
            before = page.evaluate(FINGERPRINT)
            page.mouse.click(window["x"], window["y"])
            page.keyboard.type("echo desktop-typed > typed-in-desktop.txt\n", delay=20)
            path = wait_for_file(demo["var"], "typed-in-desktop.txt", "desktop-typed")
            page.wait_for_function(f"({FINGERPRINT})() !== {before}", timeout=10_000)  # the echo shows
            print(f"\nbrowser: desktop shown {shown:.2f} s after opening the unit; typed file at {path}")

            # The clipboard box: text sent to the lab's clipboard, pasted in the terminal with a middle click.
            page.click(".hastexo-clipboard-toggle")
            page.fill(".hastexo-clipboard-text", "echo from-the-clipboard > pasted.txt")
            page.click(".hastexo-clipboard-send")
            before = page.evaluate(FINGERPRINT)
            page.mouse.click(window["x"], window["y"], button="middle")
            # xterm asks the X server for the selection: Enter only once the pasted text shows.
            page.wait_for_function(f"({FINGERPRINT})() !== {before}", timeout=10_000)
            page.keyboard.press("Enter")
            wait_for_file(demo["var"], "pasted.txt", "from-the-clipboard")

            # "Send keys": Ctrl+W (which a browser would keep: it closes the tab) reaches bash in the
            # terminal window and deletes the word before the cursor.
            page.mouse.click(window["x"], window["y"])
            page.keyboard.type("echo kept dropped", delay=20)
            page.select_option(".hastexo-keys", "ctrl-w")
            page.keyboard.type("> ctrl-w.txt\n", delay=20)
            wait_for_file(demo["var"], "ctrl-w.txt", "kept")

            # lab_resize_method display-update (the default): a narrower unit resizes the remote desktop,
            # on the same connection.
            assert len(sockets) == 1, sockets
            narrower(page)
            assert len(sockets) == 1, sockets

            # The selector offers a terminal of the same lab: a terminal ticket, typing reaches the same
            # home; then back to the desktop, which shows the terminal window again.
            page.select_option(".hastexo-port", "terminal")
            page.wait_for_selector('.hastexo-xblock[data-state="connected"][data-screen="terminal"]', timeout=30_000)
            assert page.locator(".hastexo-desktop").is_hidden() and page.locator(".hastexo-desktop-tools").is_hidden()
            page.click(".hastexo-terminal")
            page.keyboard.type("echo from-the-terminal > switched.txt\n", delay=20)
            assert os.path.dirname(wait_for_file(demo["var"], "switched.txt", "from-the-terminal")) == os.path.dirname(
                path
            )
            page.select_option(".hastexo-port", "")
            page.wait_for_selector('.hastexo-xblock[data-state="connected"][data-screen="desktop"]', timeout=30_000)
            page.wait_for_function(
                f"(({FIND_WINDOW})({list(TERMINAL_BG)}) || {{share: 0}}).share > 0.05", timeout=60_000
            )
            assert len(sockets) == 3, sockets

            content = page.content()
            assert "vnc.sock" not in content and "password" not in content.lower()
            assert all("ticket=" in ws and "vnc" not in ws.split("?", 1)[1] for ws in sockets), sockets
        finally:
            page.locator(".hastexo-xblock").screenshot(path=os.path.join(output_dir, "browser-linux-desktop.png"))
            browser.close()
    assert errors == []


def open_desktop(context, url):
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector('.hastexo-xblock[data-state="connected"]', timeout=90_000)
    page.wait_for_function(f"(({FIND_WINDOW})({list(TERMINAL_BG)}) || {{share: 0}}).share > 0.05", timeout=60_000)
    return page, page.evaluate(f"({FIND_WINDOW})({list(TERMINAL_BG)})")


def test_a_read_only_desktop_follows_the_lab_but_typing_changes_nothing(demo, output_dir):  # noqa: F811
    """The read-only scenario on the learner's own desktop: the picture updates, keys and clicks do not reach it.

    Not even from a browser that ignores read-only and writes RFB key events on the websocket itself.
    """
    require_desktop()
    from playwright.sync_api import sync_playwright

    base = demo["url"].replace("/scenario/hastexo.0/", "/scenario/hastexo.{}/") + "?student=watched-learner"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        errors = []
        context.on("weberror", lambda error: errors.append(str(error.error)))
        try:
            learner, window = open_desktop(context, base.format(1))
            # Something that keeps changing the picture, in the background so that the shell reads input meanwhile.
            learner.mouse.click(window["x"], window["y"])
            learner.keyboard.type("(for i in $(seq 1 200); do echo tick $i; sleep 0.3; done) &\n", delay=10)

            # Remember the page's websocket, to play a browser that ignores read-only below.
            context.add_init_script(
                "const send = WebSocket.prototype.send;"
                "WebSocket.prototype.send = function (data) { window.labSocket = this; return send.call(this, data); };"
            )
            watcher, window = open_desktop(context, base.format(2))
            assert watcher.locator(".hastexo-readonly-badge").is_visible()
            assert watcher.locator(".hastexo-keys").is_hidden()
            assert watcher.locator(".hastexo-clipboard-send").is_hidden()
            before = watcher.evaluate(FINGERPRINT)
            watcher.mouse.click(window["x"], window["y"])
            watcher.keyboard.type("echo watcher-typed > watcher-typed.txt\n", delay=10)
            watcher.wait_for_function(f"({FINGERPRINT})() !== {before}", timeout=10_000)  # the picture follows

            # A browser that sends key events anyway (RFB KeyEvent, type 4): the gateway drops them.
            watcher.evaluate(FORGE_KEYS, "echo forged > forged.txt\r")

            # The learner's own typing still works, after the watcher's: the watcher's never arrived.
            learner.mouse.click(window["x"], window["y"])
            learner.keyboard.type("echo learner-typed > learner-typed.txt\n", delay=10)
            wait_for_file(demo["var"], "learner-typed.txt", "learner-typed")
            time.sleep(1)
            assert find_in_labs(demo["var"], "watcher-typed.txt") == []
            assert find_in_labs(demo["var"], "forged.txt") == []
            watcher.locator(".hastexo-xblock").screenshot(
                path=os.path.join(output_dir, "browser-desktop-read-only.png")
            )
        finally:
            browser.close()
    assert errors == []


@pytest.fixture
def reconnecting_demo(monkeypatch, request):
    """The demo with lab_resize_method reconnect."""
    monkeypatch.setenv("HASTEXO_DEMO_RESIZE_METHOD", "reconnect")
    return request.getfixturevalue("demo")


def test_lab_resize_method_reconnect_reconnects_at_the_new_size(reconnecting_demo, output_dir):
    require_desktop()
    from playwright.sync_api import sync_playwright

    url = reconnecting_demo["url"].replace("/scenario/hastexo.0/", "/scenario/hastexo.1/") + "?student=resizer"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        errors = []
        context.on("weberror", lambda error: errors.append(str(error.error)))
        sockets = []
        context.on("page", lambda page: page.on("websocket", lambda ws: sockets.append(ws.url)))
        try:
            page, _window = open_desktop(context, url)
            assert len(sockets) == 1, sockets
            assert '"resize_method": "reconnect"' in page.content()
            time.sleep(2)  # the connection's one resize to the unit is done
            narrower(page)
            page.wait_for_selector('.hastexo-xblock[data-state="connected"]', timeout=30_000)
            assert len(sockets) == 2, sockets  # a new connection (and ticket) at the new size
            page.locator(".hastexo-xblock").screenshot(path=os.path.join(output_dir, "browser-desktop-reconnect.png"))
        finally:
            browser.close()
    assert errors == []


def make_due(running: dict) -> None:
    """Set every lab of the demo due for suspension now; the demo's suspender (every 10 s) does the rest."""
    var = str(running["output"].parent / "var")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "HASTEXO_TEST_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="hastexo_xblock.demo.settings", HASTEXO_DEMO_DIR=var, HASTEXO_DEMO_LABS=running["var"]
    )
    code = (
        "import datetime; from django.utils import timezone; from hastexo_xblock.models import Stack;"
        "Stack.objects.update(suspend_by=timezone.now() - datetime.timedelta(seconds=1))"
    )
    subprocess.run([sys.executable, "-m", "django", "shell", "-c", code], env=env, cwd=var, check=True, timeout=60)


@pytest.mark.timeout(300)
def test_a_suspended_desktop_comes_back_as_it_was(demo, output_dir):  # noqa: F811
    """The lab is suspended under the open page; the page follows (4010), resumes it, and the same shell is there."""
    require_desktop()
    from playwright.sync_api import sync_playwright

    url = demo["url"].replace("/scenario/hastexo.0/", "/scenario/hastexo.1/") + "?student=pausing-learner"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        errors = []
        context.on("weberror", lambda error: errors.append(str(error.error)))
        try:
            page, window = open_desktop(context, url)
            page.evaluate(
                "window.states = []; new MutationObserver(() => window.states.push("
                "document.querySelector('.hastexo-xblock').dataset.state)).observe("
                "document.querySelector('.hastexo-xblock'), {attributes: true})"
            )
            page.mouse.click(window["x"], window["y"])
            page.keyboard.type("echo before-the-pause\n", delay=20)
            # The suspender suspends the lab, the gateway closes the session, the page resumes the lab.
            make_due(demo)
            page.wait_for_function("window.states.includes('launching')", timeout=60_000)
            page.wait_for_selector('.hastexo-xblock[data-state="connected"]', timeout=120_000)
            page.wait_for_function(
                f"(({FIND_WINDOW})({list(TERMINAL_BG)}) || {{share: 0}}).share > 0.05", timeout=60_000
            )
            log = open(demo["output"].parent / "var" / "logs" / "worker.log").read()  # noqa: SIM115
            assert "suspend" in log.lower(), log[-2000:]
            # The same shell (its history) in the same window: nothing was restarted.
            page.mouse.click(window["x"], window["y"])
            page.keyboard.type("history > after-the-pause.txt\n", delay=20)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                found = find_in_labs(demo["var"], "after-the-pause.txt")
                if found and "echo before-the-pause" in open(found[0]).read():  # noqa: SIM115
                    break
                time.sleep(0.3)
            else:
                raise AssertionError("the shell's history did not survive the pause")
            page.locator(".hastexo-xblock").screenshot(path=os.path.join(output_dir, "browser-desktop-resumed.png"))
        finally:
            browser.close()
    assert errors == []
