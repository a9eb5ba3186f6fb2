"""The memo's HTML in a real headless browser (Debian's chromium), with no network.

Checks that the page loads, that every <img> decoded (``complete`` and a
non-zero ``naturalWidth``), that nothing was fetched from anywhere, that a
screenshot is not blank, and that the failure banner is in the rendered page
of a memo whose fit failed the diagnostics gate.

No browser: skipped, except under ``BAYESCALE_REQUIRE_BROWSER=1`` (set by
``.ci/run``, which installs chromium) where it is a failure.  ``BAYESCALE_CHROMIUM``
may name the browser binary.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from bayescale.memo import build_memo, write_memo

# written into the page's title once it has loaded: per image [complete, naturalWidth, naturalHeight],
# and every resource the page fetched
PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.map.call(document.images, function (i) {
    return [i.complete, i.naturalWidth, i.naturalHeight]; });
  var fetched = performance.getEntriesByType("resource").map(function (e) { return e.name; })
    .filter(function (n) { return n.indexOf("data:") !== 0; });
  document.title = "PROBE" + JSON.stringify({images: imgs, fetched: fetched,
    banners: document.querySelectorAll(".banner.fail").length,
    headings: Array.prototype.map.call(document.querySelectorAll("h2"), function (h) { return h.textContent; })});
});
</script>
"""


def _browser() -> str:
    found = os.environ.get("BAYESCALE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if not found:
        message = "no chromium found (apt-get install chromium, or set BAYESCALE_CHROMIUM)"
        if os.environ.get("BAYESCALE_REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; BAYESCALE_REQUIRE_BROWSER=1 forbids skipping", pytrace=False)
        pytest.skip(message)
    return found


def _chromium(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-extensions",
           "--disable-default-apps", f"--user-data-dir={profile}",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",   # no network, whatever asks
           "--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(tmp)})
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _probe(browser: str, memo_dir: Path, tmp: Path) -> dict:
    """Open a copy of memo.html with the probe script appended; return what the probe saw."""
    page = (memo_dir / "memo.html").read_text()
    probe = memo_dir / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    dom = _chromium(browser, tmp, "--dump-dom", probe.as_uri()).stdout
    match = re.search(r"<title>PROBE(.*?)</title>", dom, re.S)
    assert match, f"the page did not finish loading (no probe result in the DOM): {dom[:500]}"
    return json.loads(unescape(match.group(1)))


@pytest.fixture(scope="module")
def browser():
    return _browser()


def test_memo_html_loads_with_every_figure(browser, epoch_memo, tmp_path):
    out = tmp_path / "memo"
    write_memo(epoch_memo, out, save_fits=False)
    html = (out / "memo.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<script" not in html
    seen = _probe(browser, out, tmp_path)
    assert len(seen["images"]) == len(epoch_memo.figures) >= 4
    for complete, width, height in seen["images"]:
        assert complete and width > 0 and height > 0, seen["images"]     # decoded: no broken image
    widths = sorted(w for _, w, _ in seen["images"])
    assert widths[0] >= 300                                              # readable, not thumbnails
    assert seen["fetched"] == [], seen["fetched"]                        # nothing from the network
    assert seen["banners"] == 0
    for heading in ("Summary", "The question", "The data", "Laws compared", "The answer", "Sensitivity",
                    "Diagnostics", "Reproducibility"):
        assert heading in seen["headings"]


def test_memo_html_screenshot_is_not_blank(browser, epoch_memo, tmp_path):
    from PIL import Image

    out = tmp_path / "memo"
    write_memo(epoch_memo, out, save_fits=False)
    shot = tmp_path / "shot.png"
    _chromium(browser, tmp_path, "--window-size=1280,2400", "--hide-scrollbars", f"--screenshot={shot}",
              (out / "memo.html").as_uri())
    pixels = np.asarray(Image.open(shot).convert("L"), float)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 10                      # text, tables and figures, not an empty page
    assert (pixels < 100).mean() > 0.005          # dark pixels: text is drawn


def test_failure_banner_in_the_browser(browser, epoch_fit, tmp_path):
    d = epoch_fit.diagnostics
    failed = dataclasses.replace(epoch_fit, diagnostics=dataclasses.replace(
        d, divergences=40, problems=("40 divergent transitions out of 4000",), advice=("raise --target-accept",)))
    memo = build_memo(fits=[failed], budget=5.88e23, plan={"N": 7e10, "D": 1.4e12}, backtest=False,
                      progress=False)
    out = tmp_path / "memo"
    write_memo(memo, out, save_fits=False)
    seen = _probe(browser, out, tmp_path)
    assert seen["banners"] == 2                   # at the top and in the Diagnostics section
    assert all(c and w > 0 for c, w, _ in seen["images"])


def test_the_probe_sees_a_broken_image(browser, epoch_memo, tmp_path):
    """The check above would catch a broken figure: corrupt one embedded PNG and look again."""
    out = tmp_path / "memo"
    write_memo(epoch_memo, out, save_fits=False)
    page = (out / "memo.html").read_text()
    (out / "memo.html").write_text(page.replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAA", 1))
    seen = _probe(browser, out, tmp_path)
    assert sum(w == 0 for _, w, _ in seen["images"]) == 1
