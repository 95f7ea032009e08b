"""A full-page screenshot of a batch's page (or of any page: a path starting with /), served by
`mils web` from MILS_HOME's store, in headless Chromium (the system's, as the browser tests use):
for the README. It waits for the page's charts to be drawn.

    MILS_HOME=/tmp/mils-batch-photos python scripts/screenshot_batch.py photos docs/screenshots/batch-photos.png
    MILS_HOME=/tmp/mils-batch-photos python scripts/screenshot_batch.py "/compare?name=ours&name=own" docs/screenshots/compare.png
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request


def main() -> None:
    name, out = sys.argv[1], sys.argv[2]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = subprocess.Popen(["mils", "web", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}" + (name if name.startswith("/") else f"/batches/{name}")
        for _ in range(100):  # ready: its health check answers (a page may take seconds to compute)
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        from playwright.sync_api import sync_playwright

        chromium = os.environ.get("MILS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url, timeout=300_000)
            page.wait_for_function("[...document.querySelectorAll('canvas')].every((c) => c.dataset.points > 0)")
            page.screenshot(path=out, full_page=True)
            browser.close()
    finally:
        web.terminate()
        web.wait(10)
    print(out)


if __name__ == "__main__":
    main()
