"""The web console in real headless Chromium (Debian's, driven by Playwright): sign in,
connect, type, resize, paste, lose the WebSocket, and meet a proxy that blocks it.
Screenshots go to test-artifacts/ for a reviewer to look at."""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import re
import ssl
import time

import pytest

from tests.certs import PrivateCA
from tests.e2e.shells import shell_document
from tests.reverse_proxy import LOOPBACK, WebSocketMode, reverse_proxy

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Chromium's own calls home fail on this closed network; keep it from trying.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not pathlib.Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: make test installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    # Device scale 1, as on most desktop monitors: thin strokes such as "_" are one pixel.
    context = browser.new_context(
        viewport={"width": 1200, "height": 720}, device_scale_factor=1, ignore_https_errors=True
    )
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, errors


class Console:
    """The console page, as a person uses it."""

    def __init__(self, page, url):
        self.page = page
        self.url = url.rstrip("/") + "/console/"
        self.runs = 0

    def sign_in(self, key_id, secret, screenshot=None):
        self.page.goto(self.url)
        self.page.wait_for_selector("#sign-in-view:not([hidden])")
        if screenshot:
            self.screenshot(screenshot)
        self.page.fill("input[name=accessKeyId]", key_id)
        self.page.fill("input[name=secretAccessKey]", secret)
        self.page.click("#sign-in button[type=submit]")
        self.page.wait_for_selector("button.connect:not([disabled])", timeout=WAIT_MS)

    def connect(self, instance_id):
        self.page.click(f"tr[data-instance-id='{instance_id}'] button.connect")
        self.wait_for(r"[#$] $")
        return len(self.tabs()) - 1

    def tabs(self):
        return self.page.evaluate("[...window.hatchway.tabs.keys()]")

    def screen(self, tab=-1):
        return self.page.evaluate(
            "(i) => { const tabs = [...window.hatchway.tabs.values()];"
            " return tabs.at(i).screenText(); }",
            tab,
        )

    def wait_for(self, pattern, tab=-1, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen(tab)
            if re.search(pattern, text, re.MULTILINE):
                return text
            self.page.wait_for_timeout(100)
        raise AssertionError(f"{pattern!r} did not appear; the screen shows:\n{self.screen(tab)}")

    def type(self, text):
        self.page.keyboard.type(text)

    def run(self, command):
        """Type a command and return the screen once it has finished.

        The shell prints a marker after the command's output. The marker is arithmetic the
        shell does (``$((n+1))``), so the echoed command line never holds it: the wait ends
        on the output, not on the echo."""
        self.runs += 1
        self.type(f"{command}; echo run-$(({self.runs}+1))-done\n")
        return self.wait_for(rf"^run-{self.runs + 1}-done$")

    def paste(self, text):
        """A paste as the browser delivers it: a ClipboardEvent on xterm's textarea."""
        self.page.evaluate(
            """(text) => {
                const data = new DataTransfer();
                data.setData('text/plain', text);
                const area = document.querySelector('.pane.terminal:not([hidden]) textarea');
                area.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data,
                    bubbles: true, cancelable: true}));
            }""",
            text,
        )

    def screenshot(self, name):
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / name))


@pytest.fixture
def console(stack, page):
    server, _ = stack
    return Console(page, server.url)


def admin_sign_in(console, server):
    console.sign_in(*server.admin_keys())


def test_sign_in_connect_and_run_a_command(stack, console):
    server, agent = stack
    server.client().add_tags_to_resource(
        ResourceType="ManagedInstance",
        ResourceId=agent.instance_id,
        Tags=[{"Key": "env", "Value": "ci"}],
    )
    console.sign_in(*server.admin_keys(), screenshot="console-sign-in.png")
    row = console.page.locator(f"tr[data-instance-id='{agent.instance_id}']")
    assert "Online" in row.inner_text() and "env=ci" in row.inner_text()
    console.page.fill("#node-search", "env=ci")
    assert console.page.locator("tr[data-instance-id]").count() == 1
    console.page.fill("#node-search", "no-such-node")
    assert console.page.locator("tr[data-instance-id]").count() == 0
    console.page.fill("#node-search", "")
    console.screenshot("console-node-list.png")

    console.connect(agent.instance_id)
    screen = console.run("echo marker-$((6*7)); printf '\\360\\237\\230\\200|wide\\n'")
    assert "marker-42" in screen
    console.screenshot("console-terminal.png")
    # An emoji takes two cells, so the bar after it sits in the third.
    width = console.page.evaluate(
        """() => { const term = [...window.hatchway.tabs.values()].at(-1).term;
            const buffer = term.buffer.active;
            for (let y = 0; y < buffer.length; y++) {
                const line = buffer.getLine(y);
                if (line.translateToString(true).startsWith('\\u{1F600}|wide'))
                    return [line.getCell(0).getWidth(), line.getCell(2).getChars()];
            }
            return null; }"""
    )
    assert width == [2, "|"]

    # A second tab at the same time, and both sessions are the signed-in user's.
    console.page.click("#tabs [data-tab=nodes]")
    console.connect(agent.instance_id)
    console.run("echo second-tab")
    sessions = server.client().describe_sessions(State="Active")["Sessions"]
    assert len(sessions) == 2
    admin = f"arn:aws:iam::{server.app_state().account}:user/admin"
    assert {s["Owner"] for s in sessions} == {admin}

    console.type("exit 3\n")
    console.wait_for(r"Session admin-\S+ ended, exit code 3")

    console.page.click("#sign-out")
    console.page.wait_for_selector("#sign-in-view:not([hidden])")
    console.page.reload()
    console.page.wait_for_selector("#sign-in-view:not([hidden])")  # the cookie is gone


def test_a_user_signs_in_with_a_console_password_and_sessions_are_theirs(stack, console):
    server, agent = stack
    iam = server.client("iam")
    iam.create_user(UserName="carol")
    iam.create_login_profile(UserName="carol", Password="Correct-Horse-9")
    iam.put_user_policy(
        UserName="carol",
        PolicyName="sessions",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}],
            }
        ),
    )
    console.page.goto(console.url)
    console.page.click("#sign-in [data-method=password]")
    console.page.fill("input[name=userName]", "carol")
    console.page.fill("input[name=password]", "Correct-Horse-9")
    console.page.click("#sign-in button[type=submit]")
    console.page.wait_for_selector("button.connect:not([disabled])", timeout=WAIT_MS)
    assert console.page.locator("#who").inner_text() == "carol"
    console.connect(agent.instance_id)
    console.run("echo carol-was-here")
    (session,) = server.client().describe_sessions(State="Active")["Sessions"]
    assert session["Owner"].endswith(":user/carol")
    assert session["SessionId"].startswith("carol-")


def stty_size(console):
    """The shell's idea of the terminal's size: (rows, cols)."""
    screen = console.run("stty size")
    rows, cols = re.findall(r"^(\d+) (\d+)$", screen, re.MULTILINE)[-1]
    return int(rows), int(cols)


def test_resize_changes_stty_size(stack, console):
    server, agent = stack
    admin_sign_in(console, server)
    console.connect(agent.instance_id)
    first = stty_size(console)
    console.page.set_viewport_size({"width": 700, "height": 400})

    def sizes():
        """The shell's size, the page's terminal's size, and whether both agree and shrank."""
        size = stty_size(console)
        term = tuple(
            console.page.evaluate(
                "(() => { const t = [...window.hatchway.tabs.values()].at(-1).term;"
                " return [t.rows, t.cols]; })()"
            )
        )
        return size, term, size == term and size[0] < first[0] and size[1] < first[1]

    # The page refits, then the agent resizes the pty: ask the shell until it has.
    deadline = time.monotonic() + 30
    size, term, done = sizes()
    while not done and time.monotonic() < deadline:
        size, term, done = sizes()
    assert size == term
    assert size[0] < first[0] and size[1] < first[1]


def test_a_10_kb_paste_arrives_intact(stack, console):
    server, agent = stack
    admin_sign_in(console, server)
    console.connect(agent.instance_id)
    lines = [f"{i:05d} " + "abcdefghij" * 7 for i in range(140)]
    text = "\n".join(lines) + "\n"
    assert len(text) > 10 * 1024
    # The quotes keep the echoed command line from matching before cat really runs.
    console.type("stty -echo; echo paste-he''re; cat > /tmp/hw-paste.txt; ")
    console.type("stty echo; echo cat-$((6*7))-done\n")
    console.wait_for("^paste-here$")
    console.paste(text)
    console.page.keyboard.press("Control+D")
    console.wait_for("^cat-42-done$")
    screen = console.run("sha256sum /tmp/hw-paste.txt")
    assert hashlib.sha256(text.encode()).hexdigest() in screen

    # Copy: what is selected on the screen is what the clipboard gets.
    copied = console.page.evaluate(
        """() => {
            const term = [...window.hatchway.tabs.values()].at(-1).term;
            term.selectAll();
            const data = new DataTransfer();
            const area = document.querySelector('.pane.terminal:not([hidden]) textarea');
            area.dispatchEvent(new ClipboardEvent('copy', {clipboardData: data,
                bubbles: true, cancelable: true}));
            return data.getData('text/plain');
        }"""
    )
    assert hashlib.sha256(text.encode()).hexdigest() in copied


def test_a_paste_larger_than_the_send_buffer_waits_for_room(stack, console):
    """10 MB is more than the session holds unacknowledged (8 MiB in the data channel and
    1 MiB queued before it): the page sends what fits and the rest as the agent
    acknowledges, in order."""
    server, agent = stack
    admin_sign_in(console, server)
    console.connect(agent.instance_id)
    text = "".join(f"{i:06d} " + "x" * 92 + "\n" for i in range(100_000))
    assert len(text) > 9 * 1024 * 1024
    console.type("stty -echo; echo big-paste-he''re; cat > /tmp/hw-big-paste.txt; ")
    console.type("stty echo; echo big-cat-$((6*7))-done\n")
    console.wait_for("^big-paste-here$")
    console.paste(text)
    console.page.keyboard.press("Control+D")
    console.wait_for("^big-cat-42-done$", timeout=120)
    screen = console.run("sha256sum /tmp/hw-big-paste.txt")
    assert hashlib.sha256(text.encode()).hexdigest() in screen


def test_a_cut_websocket_resumes_with_nothing_lost_or_repeated(stack, page):
    server, agent = stack
    server.set_config(trusted_proxies=LOOPBACK)
    with reverse_proxy(server.url) as (proxy, proxy_loop):
        console = Console(page, proxy.url)
        admin_sign_in(console, server)
        console.connect(agent.instance_id)
        console.type("for i in $(seq 1 400); do echo line-$i; sleep 0.01; done; ")
        console.type("echo loop-$((6*7))-done\n")
        console.wait_for(r"^line-50$")
        proxy_loop.run(proxy.cut())
        screen = console.wait_for(r"^loop-42-done$", timeout=60)
    assert "Trying to open session (Retrying. Attempt #1)" in screen
    numbers = [int(n) for n in re.findall(r"^line-(\d+)$", screen, re.MULTILINE)]
    assert numbers == list(range(1, 401))


def test_when_the_websocket_cannot_come_back_the_tab_says_why(stack, page):
    server, agent = stack
    server.set_config(trusted_proxies=LOOPBACK)
    with reverse_proxy(server.url) as (proxy, proxy_loop):
        console = Console(page, proxy.url)
        admin_sign_in(console, server)
        console.connect(agent.instance_id)
        proxy.mode = WebSocketMode.REFUSE  # from now on the proxy turns WebSockets away
        proxy_loop.run(proxy.cut())
        screen = console.wait_for("Error: Failed to open session.", timeout=60)
    assert "Trying to open session (Retrying. Attempt #1)" in screen
    assert "never reached Hatchway" in screen.replace("\n", "")


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        (WebSocketMode.STRIP, "without its Upgrade header"),
        (WebSocketMode.REFUSE, "never reached Hatchway"),
    ],
)
def test_a_proxy_that_blocks_websocket_is_named(stack, page, mode, words):
    server, agent = stack
    server.set_config(trusted_proxies=LOOPBACK)
    with reverse_proxy(server.url, mode=mode) as (proxy, _):
        console = Console(page, proxy.url)
        admin_sign_in(console, server)
        console.page.click(f"tr[data-instance-id='{agent.instance_id}'] button.connect")
        screen = console.wait_for("Error: Failed to open session.", timeout=60)
        console.screenshot(f"console-websocket-{mode.value}.png")
    assert "The WebSocket upgrade was blocked" in screen
    assert words in screen.replace("\n", "")
    assert "Allow WebSocket" in screen.replace("\n", "")


def test_behind_a_tls_terminating_proxy_under_a_path_prefix(stack, page, tmp_path):
    server, agent = stack
    server.set_config(trusted_proxies=LOOPBACK)
    ca = PrivateCA(tmp_path / "ca")
    issued = ca.issue(["127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    with reverse_proxy(server.url, prefix="/hatchway", ssl_context=context) as (proxy, _):
        assert proxy.url.startswith("https://") and proxy.url.endswith("/hatchway")
        console = Console(page, proxy.url)
        admin_sign_in(console, server)
        cookies = page.context.cookies()
        (cookie,) = [c for c in cookies if c["name"] == "hatchway_console"]
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        console.connect(agent.instance_id)
        screen = console.run("echo through-the-proxy")
        sockets = page.evaluate(
            "[...window.hatchway.tabs.values()].map((t) => t.socket && t.socket.url)"
        )
    assert "through-the-proxy" in screen
    assert sockets[0].startswith(proxy.url.replace("https://", "wss://") + "/v1/data-channel/")


def test_an_encrypted_session_through_webcrypto(stack, console):
    server, agent = stack
    key_id = server.client("kms").create_key()["KeyMetadata"]["KeyId"]
    shell_document(server, {"kmsKeyId": key_id}, name="Encrypted-Shell")
    admin_sign_in(console, server)
    console.page.select_option("#session-document", "Encrypted-Shell")
    console.connect(agent.instance_id)
    screen = console.run("echo secret-$((6*7))")
    assert "This session is encrypted using AWS KMS." in screen


def cell_pixels(console, text, artifact):
    """The screenshot's pixels of the terminal row that shows exactly ``text``: one list of
    luminances (0-255) per pixel row, from the row's top to its bottom, and the cell size.
    The row is found in xterm's buffer; its place on the page is the terminal's screen
    element divided into cells."""
    box = console.page.evaluate(
        """(text) => {
            const tab = [...window.hatchway.tabs.values()].at(-1);
            const term = tab.term, buffer = term.buffer.active;
            const screen = tab.element.querySelector('.xterm-screen').getBoundingClientRect();
            const width = screen.width / term.cols, height = screen.height / term.rows;
            for (let y = buffer.viewportY; y < buffer.viewportY + term.rows; y++) {
                if (buffer.getLine(y).translateToString(true) === text) {
                    const row = y - buffer.viewportY;
                    return {x: screen.x, y: screen.y + row * height, width, height};
                }
            }
            return null;
        }""",
        text,
    )
    assert box is not None, f"{text!r} is not on the screen:\n{console.screen()}"
    clip = {
        "x": round(box["x"]),
        "y": round(box["y"]),
        "width": round(box["width"] * len(text)),
        "height": round(box["height"]),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    png = console.page.screenshot(clip=clip, path=str(ARTIFACTS / artifact))
    # Chromium decodes the PNG it made, so no imaging library is needed here.
    rows = console.page.evaluate(
        """async (b64) => {
            const image = new Image();
            image.src = 'data:image/png;base64,' + b64;
            await image.decode();
            const canvas = new OffscreenCanvas(image.width, image.height);
            const context = canvas.getContext('2d');
            context.drawImage(image, 0, 0);
            const data = context.getImageData(0, 0, image.width, image.height).data;
            const rows = [];
            for (let y = 0; y < image.height; y++) {
                const row = [];
                for (let x = 0; x < image.width; x++) {
                    const i = (y * image.width + x) * 4;
                    row.push(Math.round((data[i] + data[i + 1] + data[i + 2]) / 3));
                }
                rows.push(row);
            }
            return rows;
        }""",
        base64.b64encode(png).decode(),
    )
    return rows, box["width"]


def bright_run(rows, left, right):
    """The longest run of lit pixels (the foreground on the dark terminal) on one pixel row
    between columns ``left`` and ``right``."""
    best = 0
    for row in rows:
        run = 0
        for value in row[left:right]:
            run = run + 1 if value > 128 else 0
            best = max(best, run)
    return best


def test_underscores_show_at_device_scale_1(stack, console):
    server, agent = stack
    admin_sign_in(console, server)
    console.connect(agent.instance_id)
    console.run("echo snake_case_name; echo 'snake case name'")
    console.screenshot("console-underscore.png")
    underscored, width = cell_pixels(console, "snake_case_name", "console-underscore-row.png")
    spaced, _ = cell_pixels(console, "snake case name", "console-space-row.png")
    for column in (5, 10):  # the two underscores, between the letters
        left, right = round(column * width), round((column + 1) * width)
        # An underscore is a horizontal stroke across most of its cell, inside the row; a
        # space (the same check's control) has none.
        assert bright_run(underscored, left, right) >= (right - left) // 2, column
        assert bright_run(spaced, left, right) < (right - left) // 2, column


def test_on_a_390_px_screen_connect_is_in_view_and_opens_a_terminal(stack, console):
    server, agent = stack
    server.client().add_tags_to_resource(
        ResourceType="ManagedInstance",
        ResourceId=agent.instance_id,
        Tags=[{"Key": "env", "Value": "ci"}, {"Key": "team", "Value": "platform-engineering"}],
    )
    width, height = 390, 844  # a phone held upright
    console.page.set_viewport_size({"width": width, "height": height})
    admin_sign_in(console, server)
    console.screenshot("console-390-node-list.png")
    button = console.page.locator(f"tr[data-instance-id='{agent.instance_id}'] button.connect")
    box = button.bounding_box()
    assert box is not None
    assert 0 <= box["x"] and box["x"] + box["width"] <= width, box
    assert 0 <= box["y"] and box["y"] + box["height"] <= height, box
    # Nothing scrolls sideways, and the button is what a tap at its centre reaches.
    assert console.page.evaluate("document.documentElement.scrollWidth") <= width
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    assert console.page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y)?.closest('button.connect') !== null",
        [x, y],
    )
    console.page.mouse.click(x, y)  # where it is: no scrolling into view first
    console.wait_for(r"[#$] $")
    screen = console.run("echo narrow-$((6*7))")
    assert re.search(r"^narrow-42$", screen, re.MULTILINE)
    console.screenshot("console-390-terminal.png")
