"""A full-page screenshot of a batch's page, served by `mils web` from MILS_HOME's store, in
headless Chromium (the system's, as the browser tests use): for the README.

    MILS_HOME=/tmp/mils-batch-photos python scripts/screenshot_batch.py photos docs/screenshots/batch-photos.png
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
        url = f"http://127.0.0.1:{port}/batches/{name}"
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        from playwright.sync_api import sync_playwright

        chromium = os.environ.get("MILS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.wait_for_function("document.getElementById('batch-score-chart').dataset.points > 0")
            page.screenshot(path=out, full_page=True)
            browser.close()
    finally:
        web.terminate()
        web.wait(10)
    print(out)


if __name__ == "__main__":
    main()
