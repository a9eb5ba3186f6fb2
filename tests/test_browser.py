"""The memo's HTML in a real headless browser (Debian's chromium), with no network.

Checks, for both the demo's memo (``bayescale demo --quick``) and a memo on Epoch's runs, that the page
loads, that its decision sentence is the first text of the Summary, that every <img> decoded
(``complete`` and a non-zero ``naturalWidth``), that no character of the text renders as a missing-glyph
box (each non-ASCII character drawn in the page's fonts on a canvas, compared with characters no font
has), that nothing was fetched from anywhere, that a screenshot is not blank, and that the failure banner
is in the rendered page of a memo whose fit failed the diagnostics gate.  Negative controls show that the
probe sees a broken image and a missing glyph.

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
# every resource the page fetched, the characters drawn as a missing glyph, and the Summary's first paragraph
PROBE = r"""<script>
function missingGlyphs() {
  var canvas = document.createElement("canvas");
  canvas.width = 48; canvas.height = 48;
  var ctx = canvas.getContext("2d", {willReadFrequently: true});
  function draw(c, font) {
    ctx.clearRect(0, 0, 48, 48);
    ctx.font = "28px " + font;
    ctx.fillStyle = "#000";
    ctx.textBaseline = "top";
    ctx.fillText(c, 6, 6);
    var d = ctx.getImageData(0, 0, 48, 48).data, key = [], ink = 0;
    for (var i = 3; i < d.length; i += 4) { key.push(d[i]); ink += d[i]; }
    return {key: key.join(","), ink: ink};
  }
  var out = [];
  [["body", document.body], ["code", document.querySelector("code")]].forEach(function (pair) {
    var el = pair[1];
    if (!el) return;
    var font = getComputedStyle(el).fontFamily;
    var nothing = [draw("\uFFFF", font).key, draw("\u0378", font).key, draw("\uDB7F\uDFFD", font).key];
    var seen = {};
    Array.from(pair[0] === "body" ? document.body.innerText : el.textContent).forEach(function (c) {
      if (c.codePointAt(0) < 127 || /\s/.test(c) || seen[c]) return;
      seen[c] = 1;
      var g = draw(c, font);
      if (g.ink === 0 || nothing.indexOf(g.key) >= 0) out.push(c);
    });
  });
  return out;
}
window.addEventListener("load", function () {
  var imgs = Array.prototype.map.call(document.images, function (i) {
    return [i.complete, i.naturalWidth, i.naturalHeight]; });
  var fetched = performance.getEntriesByType("resource").map(function (e) { return e.name; })
    .filter(function (n) { return n.indexOf("data:") !== 0; });
  var summary = document.getElementById("summary");
  var first = summary ? summary.nextElementSibling : null;
  while (first && first.tagName !== "P") first = first.nextElementSibling;
  document.title = "PROBE" + JSON.stringify({images: imgs, fetched: fetched,
    banners: document.querySelectorAll(".banner.fail").length, missing: missingGlyphs(),
    decision: first ? first.textContent : null,
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


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """The demo's memo, as `bayescale demo --quick` writes it (2 chains per fit: a smoke run of the layout)."""
    import contextlib
    import io

    from bayescale.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["demo", "--out", str(out), "--quick", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def epoch_dir(epoch_memo, tmp_path_factory):
    out = tmp_path_factory.mktemp("epoch") / "memo"
    write_memo(epoch_memo, out, save_fits=False)
    return out


@pytest.fixture(params=["demo", "epoch"])
def memo_dir(request):
    return request.getfixturevalue(f"{request.param}_dir")


def test_memo_html_loads_with_every_figure_and_every_glyph(browser, memo_dir, tmp_path):
    html = (memo_dir / "memo.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<script" not in html
    n_figures = len(json.loads((memo_dir / "memo.json").read_text())["figures"])
    seen = _probe(browser, memo_dir, tmp_path)
    assert len(seen["images"]) == n_figures >= 5
    for complete, width, height in seen["images"]:
        assert complete and width > 0 and height > 0, seen["images"]     # decoded: no broken image
    widths = sorted(w for _, w, _ in seen["images"])
    assert widths[0] >= 300                                              # readable, not thumbnails
    assert seen["fetched"] == [], seen["fetched"]                        # nothing from the network
    assert seen["missing"] == [], seen["missing"]                        # no missing-glyph boxes
    assert re.match(r"(Approve the plan|Change the split|Do not act on this memo yet|The data cannot settle)",
                    seen["decision"]), seen["decision"]
    assert "70B parameters on 1.4T tokens" in seen["decision"] or "Do not act" in seen["decision"]
    for heading in ("Summary", "The question", "The data", "Laws compared", "The answer", "Sensitivity",
                    "Diagnostics", "Reproducibility"):
        assert heading in seen["headings"]


def test_memo_html_screenshot_is_not_blank(browser, memo_dir, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    _chromium(browser, tmp_path, "--window-size=1280,2400", "--hide-scrollbars", f"--screenshot={shot}",
              (memo_dir / "memo.html").as_uri())
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


def test_the_probe_sees_a_broken_image_and_a_missing_glyph(browser, epoch_memo, tmp_path):
    """The checks above would catch a broken figure and a box for a glyph: corrupt one embedded PNG, put the
    old banner's emoji and a private-use character into the text, and look again."""
    out = tmp_path / "memo"
    write_memo(epoch_memo, out, save_fits=False)
    page = (out / "memo.html").read_text()
    page = page.replace("data:image/png;base64,iVBOR", "data:image/png;base64,AAAA", 1)
    page = page.replace("<h2 id=\"summary\">Summary</h2>", "<h2 id=\"summary\">Summary</h2><p>\u26d4 \ue000 ok</p>", 1)
    (out / "memo.html").write_text(page)
    seen = _probe(browser, out, tmp_path)
    assert sum(w == 0 for _, w, _ in seen["images"]) == 1
    assert "\ue000" in seen["missing"], seen["missing"]
    if not _has_emoji_font():
        assert "\u26d4" in seen["missing"], seen["missing"]


def _has_emoji_font() -> bool:
    try:
        done = subprocess.run(["fc-list", ":charset=26d4", "family"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return True             # cannot tell: do not assert either way
    return bool(done.stdout.strip())
