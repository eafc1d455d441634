"""The browser console: keystroke echo and output throughput in real headless Chromium.

Starts `hatchway up` in a temporary home, signs in to /console/ with Playwright driving
Debian's Chromium, opens a terminal tab and measures, inside the page:
- keystroke echo: one key given to the terminal until xterm.js has drawn its echo;
- throughput: a command printing N MB of 100-column lines, until xterm.js has drawn the
  line after it.

The baseline in the same run is Hatchway's Python client on the same server and agent
(bench/session.py's Shell: the same protocol with no browser and no terminal emulator), and
a local shell under a pty for echo. The ratios show what the browser adds.

    .venv/bin/python bench/console.py [--keystrokes 100] [--megabytes 5]
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from session import Shell, Stack, local_figures, summary  # bench/session.py

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MARKER = "bench-done"

ECHO_JS = """async (n) => {
    const tab = [...window.hatchway.tabs.values()].at(-1);
    const times = [];
    for (let i = 0; i < n; i++) {
        const began = performance.now();
        await new Promise((resolve) => {
            const drawn = tab.term.onWriteParsed(() => { drawn.dispose(); resolve(); });
            tab.input("x");
        });
        times.push((performance.now() - began) / 1000);
    }
    tab.input("\\x15");
    return times;
}"""

THROUGHPUT_JS = """async ([command, marker]) => {
    const tab = [...window.hatchway.tabs.values()].at(-1);
    const buffer = () => tab.term.buffer.active;
    const line = (y) => buffer().getLine(y)?.translateToString(true) ?? "";
    const began = performance.now();
    await new Promise((resolve) => {
        const drawn = tab.term.onWriteParsed(() => {
            const y = buffer().baseY + buffer().cursorY;
            if (line(y - 1) === marker || line(y) === marker) { drawn.dispose(); resolve(); }
        });
        tab.input(command + "\\r");
    });
    return (performance.now() - began) / 1000;
}"""


def command(megabytes: int) -> str:
    # Lines of 99 columns, the last one ended by the first echo; the quotes keep the echoed
    # command line from matching the marker.
    size = megabytes * 1_000_000
    return f"head -c {size} /dev/zero | tr '\\0' a | fold -w 99; echo; echo bench-do''ne"


def browser_figures(stack: Stack, home: Path, keystrokes: int, megabytes: int):
    from playwright.sync_api import sync_playwright

    credentials = configparser.ConfigParser()
    credentials.read(home / "credentials")
    key = credentials["default"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1200, "height": 720})
        page.goto(f"{stack.url}/console/")
        page.fill("input[name=accessKeyId]", key["aws_access_key_id"])
        page.fill("input[name=secretAccessKey]", key["aws_secret_access_key"])
        page.click("#sign-in button[type=submit]")
        page.click(f"tr[data-instance-id='{stack.target}'] button.connect", timeout=30_000)
        # Polled with evaluate: the page's CSP forbids the eval that wait_for_function uses.
        prompt = "() => /[#$] $/.test([...window.hatchway.tabs.values()].at(-1).screenText())"
        deadline = time.monotonic() + 30
        while not page.evaluate(prompt):
            if time.monotonic() > deadline:
                screen = page.evaluate(
                    "() => [...window.hatchway.tabs.values()].at(-1).screenText()"
                )
                raise SystemExit(f"no shell prompt in the console within 30 s:\n{screen}")
            time.sleep(0.1)
        time.sleep(0.5)
        print("console: signed in, shell open; measuring echo", file=sys.stderr)
        echoes = page.evaluate(ECHO_JS, keystrokes)
        print("console: measuring throughput", file=sys.stderr)
        seconds = page.evaluate(THROUGHPUT_JS, [command(megabytes), MARKER])
        browser.close()
    return echoes, seconds


async def client_figures(stack: Stack, keystrokes: int, megabytes: int):
    async with aiohttp.ClientSession() as http:
        shell, _ = await Shell.open(stack, http)
        await shell.started.wait()
        await asyncio.sleep(0.5)
        echoes = [await shell.echo_time() for _ in range(keystrokes)]
        await shell.type(b"\x15")
        began = time.perf_counter()
        await shell.type(command(megabytes).encode() + b"\r")
        needle = f"\n{MARKER}".encode()
        while needle not in shell.output[-4096:]:
            shell.changed.clear()
            await asyncio.wait_for(shell.changed.wait(), 60)
        seconds = time.perf_counter() - began
        await shell.close()
    return echoes, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keystrokes", type=int, default=100)
    parser.add_argument("--megabytes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        stack = Stack(home)
        try:
            browser_echoes, browser_seconds = browser_figures(
                stack, home, args.keystrokes, args.megabytes
            )
            client_echoes, client_seconds = asyncio.run(
                client_figures(stack, args.keystrokes, args.megabytes)
            )
        finally:
            stack.stop()
    _, pty_echoes = local_figures(1, args.keystrokes)
    print(f"Keystroke echo, {args.keystrokes} keystrokes")
    print(f"  console (Chromium)   {summary(browser_echoes)}")
    print(f"  Python client        {summary(client_echoes)}")
    print(f"  local pty            {summary(pty_echoes)}")
    ratio = statistics.median(browser_echoes) / statistics.median(client_echoes)
    print(f"  console / client (median) {ratio:.1f}x")
    print(f"Output of {args.megabytes} MB in 100-column lines, drawn")
    browser_rate = args.megabytes / browser_seconds
    client_rate = args.megabytes / client_seconds
    print(f"  console (Chromium)   {browser_rate:7.1f} MB/s ({browser_seconds:.2f} s)")
    print(f"  Python client        {client_rate:7.1f} MB/s ({client_seconds:.2f} s)")
    print(f"  console / client     {browser_rate / client_rate:.2f}")


if __name__ == "__main__":
    main()
