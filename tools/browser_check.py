#!/usr/bin/env python
"""Open the built docs in headless Chromium and fail on JavaScript errors, failed loads or an empty page.

`python tools/browser_check.py` opens the home page and one chapter of `_docs/` (the first with a plot and math),
from disk (`file://`) and from a local HTTP server (as `python -m http.server` serves it), at desktop and phone
width, and writes screenshots to `_screenshots/`. It drives Chromium through the DevTools protocol over
`--remote-debugging-pipe` (standard library only). On each page it waits for MathJax to typeset, then checks:
no uncaught exception, console error or failed resource load; content present; math typeset without errors and
no raw `$$`, `\\(` or `#|` left in the text outside MathJax's output and code; highlighted code; every image
loaded; a sidebar; no horizontal scrolling at phone width; and, on the home page, that search finds the chapters.
Exit code 0 when all pass, 1 otherwise, 2 when Chromium is missing (`apt-get install -y chromium`).
"""
import argparse, base64, fcntl, functools, http.server, json, os, queue, re, shutil, subprocess, sys, tempfile
import threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
         '--disable-extensions', '--disable-default-apps', '--mute-audio', '--hide-scrollbars']
SIZES = {'desktop': (1280, 900, 1, False), 'phone': (390, 844, 2, True)}

def find_chromium(explicit=None):
    for c in [explicit, os.environ.get('CHROMIUM'), 'chromium', 'chromium-browser', 'google-chrome', 'chrome']:
        if c and shutil.which(c): return shutil.which(c)

class Browser:
    "Headless Chromium driven by the DevTools protocol over a pipe (fd 3: commands in, fd 4: messages out)"
    def __init__(self, exe, timeout=30):
        self.timeout, self.profile = timeout, tempfile.mkdtemp(prefix='optlib-chromium-')
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        def fds():  # in the child: put the pipe ends on fds 3 and 4, where Chromium looks for them
            a, b = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3); os.dup2(b, 4)
        self.proc = subprocess.Popen([exe, *FLAGS, f'--user-data-dir={self.profile}', '--remote-debugging-pipe',
                                      'about:blank'], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, pass_fds=(3, 4), preexec_fn=fds)
        os.close(cmd_r); os.close(res_w)
        self._id, self._replies, self.events = 0, {}, queue.Queue()
        self._lock = threading.Condition()
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(l.decode('utf-8', 'replace') for l in self.proc.stderr),
                         daemon=True).start()
        self.send('Browser.getVersion')

    def _read(self):
        buf = b''
        while True:
            chunk = os.read(self._res_r, 1 << 16)
            if not chunk: break
            buf += chunk
            while b'\0' in buf:
                raw, buf = buf.split(b'\0', 1)
                msg = json.loads(raw)
                if 'id' in msg:
                    with self._lock: self._replies[msg['id']] = msg; self._lock.notify_all()
                else: self.events.put(msg)
        with self._lock: self._lock.notify_all()

    def send(self, method, session=None, **params):
        with self._lock: self._id += 1; i = self._id
        msg = {'id': i, 'method': method, 'params': params}
        if session: msg['sessionId'] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b'\0')
        end = time.time() + self.timeout
        with self._lock:
            while i not in self._replies:
                if time.time() > end or self.proc.poll() is not None:
                    raise RuntimeError(f'no reply to {method} from Chromium:\n' + ''.join(self.stderr[-20:]))
                self._lock.wait(0.1)
            r = self._replies.pop(i)
        if 'error' in r: raise RuntimeError(f'{method}: {r["error"]}')
        return r.get('result', {})

    def close(self):
        try: self.send('Browser.close')
        except Exception: pass
        try: self.proc.wait(10)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        os.close(self._cmd_w)
        shutil.rmtree(self.profile, ignore_errors=True)

class Tab:
    "One page target, with what it reported: exceptions, console errors and failed loads"
    def __init__(self, browser, width, height, scale, mobile):
        self.b = browser
        tid = browser.send('Target.createTarget', url='about:blank')['targetId']
        self.s = browser.send('Target.attachToTarget', targetId=tid, flatten=True)['sessionId']
        for m in ('Page.enable', 'Runtime.enable', 'Log.enable', 'Network.enable'): self.send(m)
        self.send('Emulation.setDeviceMetricsOverride', width=width, height=height, deviceScaleFactor=scale,
                  mobile=mobile)
        self.errors, self.loaded = [], False

    def send(self, method, **params): return self.b.send(method, session=self.s, **params)

    def pump(self, seconds=0.0):
        "Take the events that arrived (waiting up to `seconds` for more)"
        end = time.time() + seconds
        while True:
            try: ev = self.b.events.get(timeout=max(0.0, end - time.time()) if seconds else 0.0)
            except queue.Empty: return
            if ev.get('sessionId') != self.s: continue
            m, p = ev['method'], ev.get('params', {})
            if m == 'Page.loadEventFired': self.loaded = True
            elif m == 'Runtime.exceptionThrown':
                d = p['exceptionDetails']
                self.errors.append('exception: ' + (d.get('exception', {}).get('description') or d.get('text', '')))
            elif m == 'Runtime.consoleAPICalled' and p.get('type') in ('error', 'assert'):
                self.errors.append('console.error: ' + ' '.join(str(a.get('value', a.get('description', '')))
                                                                 for a in p.get('args', [])))
            elif m == 'Log.entryAdded' and p['entry'].get('level') == 'error':
                e = p['entry']; self.errors.append(f'{e.get("source")}: {e.get("text")} {e.get("url", "")}'.strip())
            elif m == 'Network.loadingFailed' and not p.get('canceled'):
                self.errors.append(f'failed to load ({p.get("errorText")}, {p.get("type")})')

    def goto(self, url, timeout=20):
        self.loaded = False
        self.send('Page.navigate', url=url)
        end = time.time() + timeout
        while not self.loaded and time.time() < end: self.pump(0.2)
        if not self.loaded: self.errors.append(f'{url} did not finish loading in {timeout}s')

    def js(self, expr, timeout=20):
        r = self.send('Runtime.evaluate', expression=expr, awaitPromise=True, returnByValue=True,
                      timeout=timeout * 1000)
        if 'exceptionDetails' in r: raise RuntimeError(f'{expr[:60]}...: {r["exceptionDetails"]}')
        return r['result'].get('value')

    def screenshot(self, path, full=False, max_height=7000):
        kw = {}
        if full:
            m = self.send('Page.getLayoutMetrics')['cssContentSize']
            kw = dict(captureBeyondViewport=True, clip={'x': 0, 'y': 0, 'width': m['width'],
                                                        'height': min(m['height'], max_height), 'scale': 1})
        Path(path).write_bytes(base64.b64decode(self.send('Page.captureScreenshot', format='png', **kw)['data']))

WAIT_MATHJAX = """(async () => {
  const t0 = Date.now();
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() - t0 < 10000)
    await new Promise(r => setTimeout(r, 50));
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return 'MathJax did not load';
  await MathJax.startup.promise;
  return 'ok';
})()"""

INSPECT = r"""(() => {
  const main = document.querySelector('.md-content') || document.body;
  const skip = el => el.closest('mjx-container, pre, code, script, style, textarea, .clipboard-copy-txt');
  const leaks = [];
  const walk = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  for (let n; (n = walk.nextNode());) {
    if (skip(n.parentElement)) continue;
    const m = n.textContent.match(/\$\$|\\\(|#\||\\(frac|sum|theta|alpha|beta|eta|lambda|nabla|left|right|mathbf|mathrm|sqrt|cdot)\b/);
    if (m) leaks.push(n.textContent.trim().slice(0, 80));
  }
  const shown = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const codeLines = [...main.querySelectorAll('pre')].filter(shown);
  const tokens = [...main.querySelectorAll('.highlight-ipynb span[class], .highlight span[class], pre code span[class]')];
  const imgs = [...main.querySelectorAll('img')];
  return {
    title: document.title,
    text: main.innerText.trim().length,
    h1: (main.querySelector('h1') || {}).textContent || '',
    math: main.querySelectorAll('mjx-container').length,
    mathErrors: main.querySelectorAll('mjx-merror, [data-mjx-error]').length,
    leaks,
    code: codeLines.length,
    tokens: tokens.length,
    images: imgs.length,
    brokenImages: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80)),
    nav: document.querySelectorAll('.md-nav--primary .md-nav__link').length,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
  };
})()"""

SEARCH = r"""(async (q) => {
  const input = document.querySelector('input.md-search__input');
  if (!input) return -1;
  input.focus(); input.value = q; input.dispatchEvent(new Event('input', {bubbles: true}));
  input.dispatchEvent(new KeyboardEvent('keyup', {bubbles: true, key: q.slice(-1)}));
  const t0 = Date.now();
  while (Date.now() - t0 < 10000) {
    const n = document.querySelectorAll('.md-search-result__item').length;
    if (n) return n;
    await new Promise(r => setTimeout(r, 100));
  }
  return 0;
})"""

def pick_pages(site):
    "The home page and the first chapter (in the sidebar's order) with a plot and math, else with either"
    pages = [p for p in sorted(site.glob('*.html')) if p.name not in ('index.html', '404.html')]
    nav = re.findall(r'class="md-nav__link[^"]*"\s+href="([^"#]+\.html)"', (site/'index.html').read_text())
    order = [site/h for h in dict.fromkeys(nav) if (site/h).exists() and h != 'index.html'] or pages
    def score(p):
        t = p.read_text(encoding='utf-8')
        t = re.sub(r'<(script|style)\b.*?</\1>', '', t[t.find('jupyter-wrapper'):], flags=re.S)
        t = re.sub(r'<(pre|code)\b.*?</\1>', '', t, flags=re.S)
        return 2 * ('<img' in t) + bool(re.search(r'\$\$.+?\$\$|\$[^$<>\n]{1,200}\$', t, re.S))
    best = max(order, key=score, default=None)  # max keeps the first of equals
    return ['index.html'] + ([best.name] if best else [])

def serve(site):
    "A local HTTP server for `site`, as `python -m http.server` would serve it; returns (server, base url)"
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    handler = functools.partial(Quiet, directory=str(site))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f'http://127.0.0.1:{srv.server_address[1]}/'

def check_page(tab, url, name, shots, size, search_for=None):
    "Open `url`, wait for MathJax, take screenshots; return the problems found"
    tab.errors.clear()
    tab.goto(url)
    mj = tab.js(WAIT_MATHJAX)
    tab.pump(0.5)
    info = tab.js(INSPECT)
    problems = [] if mj == 'ok' else [mj]
    if info['text'] < 200: problems.append(f'page looks empty ({info["text"]} characters of text)')
    if not info['h1']: problems.append('no title heading')
    if info['mathErrors']: problems.append(f'{info["mathErrors"]} math error(s) from MathJax')
    problems += [f'raw math/directive text: {l!r}' for l in info['leaks']]
    problems += [f'image did not load: {s}' for s in info['brokenImages']]
    if info['nav'] < 1: problems.append('no navigation links')
    if size == 'phone' and info['overflow'] > 2: problems.append(f'page scrolls sideways by {info["overflow"]}px on a phone')
    if info['code'] and not info['tokens']: problems.append('code blocks are not highlighted')
    if search_for:
        n = tab.js(f'({SEARCH})({json.dumps(search_for)})')
        info['search'] = n
        if n < 1: problems.append(f'search for {search_for!r} found nothing')
        tab.js("(() => { const i = document.querySelector('input.md-search__input'); if (i) { i.value = ''; "
               "i.dispatchEvent(new Event('input', {bubbles: true})); i.blur(); } "
               "const t = document.querySelector('#__search'); if (t) t.checked = false; })()")
    tab.pump(0.3)
    problems += tab.errors
    stem = Path(name).stem
    shots.mkdir(parents=True, exist_ok=True)
    tab.screenshot(shots/f'{stem}-{size}.png')
    if size == 'desktop':  # close-ups: the first display math, plot and show_doc entry, when the page has them
        for what, sel in (('math', 'mjx-container[display="true"]'), ('plot', '.jp-OutputArea-output img'),
                          ('api', 'a.nbdev-anchor')):
            if tab.js(f"(() => {{ const e = document.querySelector('.md-content {sel}'); "
                      f"if (!e) return false; e.scrollIntoView({{block: 'center'}}); return true; }})()"):
                tab.pump(0.3)
                tab.screenshot(shots/f'{stem}-{what}.png')
    return info, problems

def run(site, pages, shots, chromium, modes=('file', 'http')):
    site, shots = Path(site).resolve(), Path(shots)
    shots.mkdir(parents=True, exist_ok=True)
    srv, base = serve(site) if 'http' in modes else (None, None)
    b = Browser(chromium)
    failed = 0
    try:
        for mode in modes:
            root = site.as_uri() + '/' if mode == 'file' else base
            for size, dims in SIZES.items():
                tab = Tab(b, *dims)
                for name in pages:
                    search = 'optimizer' if name == 'index.html' and size == 'desktop' else None
                    info, probs = check_page(tab, root + name, name, shots/mode, size, search)
                    failed += bool(probs)
                    summary = (f"text={info['text']} math={info['math']} code={info['code']} tokens={info['tokens']} "
                               f"images={info['images']} nav={info['nav']}" + (f" search={info['search']}" if 'search' in info else ''))
                    print(f"{'FAIL' if probs else 'ok  '} {mode:4} {size:7} {name}: {summary}")
                    for p in probs: print(f'       - {p}')
                tab.send('Page.close')
    finally:
        b.close()
        if srv: srv.shutdown()
    return failed

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--site', default=str(ROOT/'_docs'))
    ap.add_argument('--pages', default='', help='comma-separated pages (default: home and a chapter with a plot)')
    ap.add_argument('--out', default=str(ROOT/'_screenshots'))
    ap.add_argument('--chromium', default=None)
    ap.add_argument('--modes', default='file,http', help='file, http or both')
    a = ap.parse_args(argv)
    exe = find_chromium(a.chromium)
    if not exe:
        print('browser check skipped: no Chromium found (apt-get install -y chromium)'); return 2
    site = Path(a.site)
    if not (site/'index.html').exists():
        print(f'no site at {site}: build it with `python tools/docs.py`'); return 1
    pages = [p for p in a.pages.split(',') if p] or pick_pages(site)
    failed = run(site, pages, a.out, exe, modes=tuple(a.modes.split(',')))
    print(f'browser check: {"ok" if not failed else f"{failed} page view(s) failed"}; screenshots in {a.out}')
    return 1 if failed else 0

if __name__ == '__main__': sys.exit(main())
