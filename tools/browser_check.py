#!/usr/bin/env python
"""Click through the built docs in headless Chromium, as a reader would; fail on what a reader would see.

`python tools/browser_check.py` opens the home page and a chapter with a plot and math (or `--pages`), from disk and
from a local HTTP server, at desktop and phone width (screenshots in `_screenshots/`), through the DevTools protocol
over a pipe (standard library only). Fails on: a JavaScript error or failed load, an empty page, math not typeset,
raw `$$`/`#|`, unhighlighted code, a broken image, sideways scrolling on a phone, a signature wrapped inside a name;
on the home page, search not finding the chapters or not showing an API name's own entry as clean text, and a link
to an API entry (`Learner`, `Adam`...) that does not scroll to it. Exit 0 ok, 1 failed, 2 no Chromium.
"""
import argparse, base64, fcntl, functools, http.server, json, os, re, select, shutil, subprocess, sys, tempfile
import threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
         '--disable-extensions', '--disable-default-apps', '--mute-audio', '--hide-scrollbars']
SIZES = {'desktop': (1280, 900, 1, False), 'phone': (390, 844, 2, True)}
SEARCH_NAMES = ('Adam', 'Lamb', 'Lion', 'Larc', 'Stat', 'RMSProp', 'RAdam', 'MetricsCB')  # those the issue found broken
JUMP_NAMES = ('Learner', 'Adam', 'SGD', 'Lamb')
MAX_JUMP_PX = 120  # an entry followed by a link must end up this close to the top of the window (below the header)

def find_chromium(explicit=None):
    for c in [explicit, os.environ.get('CHROMIUM'), 'chromium', 'chromium-browser', 'google-chrome', 'chrome']:
        if c and shutil.which(c): return shutil.which(c)

class Chromium:
    "Headless Chromium with one page, driven by the DevTools protocol over a pipe (fd 3: commands in, fd 4: messages out)"
    def __init__(self, exe, timeout=30):
        self.timeout, self.profile, self.site = timeout, tempfile.mkdtemp(prefix='optlib-chromium-'), None
        cmd_r, self._w = os.pipe()
        self._r, res_w = os.pipe()
        def fds():  # in the child: put the pipe ends on fds 3 and 4, where Chromium looks for them
            a, b = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3); os.dup2(b, 4)
        self.proc = subprocess.Popen([exe, *FLAGS, f'--user-data-dir={self.profile}', '--remote-debugging-pipe', 'about:blank'],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     pass_fds=(3, 4), preexec_fn=fds)
        os.close(cmd_r); os.close(res_w)
        self._id, self._buf, self.session, self.errors, self.loaded = 0, b'', None, [], False
        tid = self.send('Target.createTarget', url='about:blank')['targetId']
        self.session = self.send('Target.attachToTarget', targetId=tid, flatten=True)['sessionId']
        for m in ('Page.enable', 'Runtime.enable', 'Log.enable', 'Network.enable'): self.send(m)

    def _next(self, timeout):
        "The next message from Chromium, or None when none came in `timeout` seconds"
        while b'\0' not in self._buf:
            if not select.select([self._r], [], [], max(0, timeout))[0]: return None
            if not (chunk := os.read(self._r, 1 << 16)): raise RuntimeError('Chromium exited')
            self._buf += chunk
        raw, self._buf = self._buf.split(b'\0', 1)
        return json.loads(raw)

    def send(self, method, **params):
        "Send a command (to the page once there is one) and return its result, noting the events that come meanwhile"
        self._id += 1
        msg = {'id': self._id, 'method': method, 'params': params, **({'sessionId': self.session} if self.session else {})}
        os.write(self._w, json.dumps(msg).encode() + b'\0')
        end = time.time() + self.timeout
        while (r := self._next(end - time.time())) is not None:
            if r.get('id') != self._id: self._event(r); continue
            if 'error' in r: raise RuntimeError(f'{method}: {r["error"]}')
            return r.get('result', {})
        raise RuntimeError(f'no reply to {method} from Chromium in {self.timeout}s')

    def _event(self, ev):
        m, p = ev.get('method'), ev.get('params', {})
        if m == 'Page.loadEventFired': self.loaded = True
        elif m == 'Runtime.exceptionThrown':
            d = p['exceptionDetails']
            self.errors.append('exception: ' + (d.get('exception', {}).get('description') or d.get('text', '')))
        elif m == 'Runtime.consoleAPICalled' and p.get('type') in ('error', 'assert'):
            self.errors.append('console.error: ' + ' '.join(str(a.get('value', a.get('description', ''))) for a in p.get('args', [])))
        elif m == 'Log.entryAdded' and p['entry'].get('level') == 'error':
            e = p['entry']; self.errors.append(f'{e.get("source")}: {e.get("text")} {e.get("url", "")}'.strip())
        elif m == 'Network.loadingFailed' and not p.get('canceled'):
            self.errors.append(f'failed to load ({p.get("errorText")}, {p.get("type")})')

    def pump(self, seconds):
        "Take the events that come in the next `seconds`"
        end = time.time() + seconds
        while (ev := self._next(end - time.time())) is not None: self._event(ev)

    def resize(self, width, height, scale, mobile):
        self.send('Emulation.setDeviceMetricsOverride', width=width, height=height, deviceScaleFactor=scale, mobile=mobile)

    def wait_load(self, timeout=20):
        end = time.time() + timeout
        while not self.loaded and time.time() < end: self.pump(0.2)
        if not self.loaded: self.errors.append(f'page did not finish loading in {timeout}s')
        return self.js(WAIT_MATHJAX)

    def goto(self, url):
        self.loaded = False
        self.send('Page.navigate', url=url)
        return self.wait_load()

    def js(self, expr, timeout=20):
        r = self.send('Runtime.evaluate', expression=expr, awaitPromise=True, returnByValue=True, timeout=timeout * 1000)
        if 'exceptionDetails' in r: raise RuntimeError(f'{expr[:60]}...: {r["exceptionDetails"]}')
        return r['result'].get('value')

    def screenshot(self, path):
        Path(path).write_bytes(base64.b64decode(self.send('Page.captureScreenshot', format='png')['data']))

    def close(self):
        try: self.send('Browser.close')
        except Exception: pass
        try: self.proc.wait(10)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        os.close(self._w); os.close(self._r)
        shutil.rmtree(self.profile, ignore_errors=True)

WAIT_MATHJAX = """(async () => {
  const t0 = Date.now();
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() - t0 < 10000)
    await new Promise(r => setTimeout(r, 50));
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return 'MathJax did not load';
  await MathJax.startup.promise;
  await new Promise(r => setTimeout(r, 100));
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
  const imgs = [...main.querySelectorAll('img')];
  const sigs = [...main.querySelectorAll('.nbdev-anchor')].map(h => (h.closest('.jp-RenderedMarkdown') || h.parentElement).querySelector('pre')).filter(p => p);
  const wrapped = sigs.map(p => {  // a signature the browser wraps, or may wrap inside a name
    const cs = getComputedStyle(p), lines = p.textContent.replace(/\n$/, '').split('\n').length;
    const h = p.getBoundingClientRect().height - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom);
    const how = ['break-all', 'anywhere'].includes(cs.wordBreak) || cs.overflowWrap === 'anywhere' ? 'may break inside a name'
              : h > lines * parseFloat(cs.lineHeight) + 2 ? `wraps ${lines} lines into ${Math.round(h / parseFloat(cs.lineHeight))}`
              : window.innerWidth >= 1200 && p.scrollWidth > p.clientWidth + 1 ? 'does not fit the column' : '';
    return how && `${p.textContent.split('(')[0].trim()}: ${how}`;
  }).filter(w => w);
  return {
    text: main.innerText.trim().length,
    h1: (main.querySelector('h1') || {}).textContent || '',
    math: main.querySelectorAll('mjx-container').length,
    mathErrors: main.querySelectorAll('mjx-merror, [data-mjx-error]').length,
    leaks, wrapped, sigs: sigs.length,
    code: [...main.querySelectorAll('pre')].filter(shown).length,
    tokens: main.querySelectorAll('.highlight-ipynb span[class], .highlight span[class], pre code span[class]').length,
    images: imgs.length,
    brokenImages: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80)),
    nav: document.querySelectorAll('.md-nav--primary .md-nav__link').length,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
  };
})()"""

SEARCH = r"""(async (q) => {
  const input = document.querySelector('input.md-search__input');
  if (!input) return null;
  input.focus(); input.value = q; input.dispatchEvent(new Event('input', {bubbles: true}));
  input.dispatchEvent(new KeyboardEvent('keyup', {bubbles: true, key: q.slice(-1)}));
  const t0 = Date.now();
  let items = [];
  while (Date.now() - t0 < 10000 && !(items = [...document.querySelectorAll('.md-search-result__link')]).length)
    await new Promise(r => setTimeout(r, 100));
  await new Promise(r => setTimeout(r, 300));
  const ok = new Set(['A', 'ARTICLE', 'DIV', 'H1', 'H2', 'P', 'PRE', 'CODE', 'MARK', 'LI', 'UL', 'OL', 'SUB', 'SUP']);
  const res = [...document.querySelectorAll('.md-search-result__link')].map(a => ({
    href: a.getAttribute('href'), title: (a.querySelector('h1, h2') || {}).textContent || '',
    broken: !![...a.querySelectorAll('*')].find(e => !ok.has(e.tagName)) || !!a.querySelector('mark mark')
            || /mark>|^\s*>/.test((a.querySelector('h1, h2') || a).textContent)}));
  input.value = ''; input.dispatchEvent(new Event('input', {bubbles: true})); input.blur();
  const t = document.querySelector('#__search'); if (t) t.checked = false;
  return res;
})"""

def pick_pages(site):
    "The home page and the first chapter (in the sidebar's order) with a plot and math, else the first chapter"
    nav = re.findall(r'<a href="([^"#]+\.html)"[^>]*class="md-nav__link', (site/'index.html').read_text())
    order = [h for h in dict.fromkeys(nav) if (site/h).exists() and h != 'index.html']
    def text(h): return re.sub(r'<(script|style)\b.*?</\1>', '', (site/h).read_text(encoding='utf-8'), flags=re.S)
    best = next((h for h in order if '<img' in (t := text(h)) and '$$' in t), order[0] if order else None)
    return ['index.html'] + ([best] if best else [])

def api_entries(site):
    "{API entry id: page} of the site"
    return {i: f.name for f in sorted(site.glob('*.html')) for i in re.findall(r'class="nbdev-anchor" id="([^"]+)"', f.read_text())}

def jump_links(site, names=JUMP_NAMES):
    "For each name with an API entry: (a page with a link to the entry, the link's href, the target page)"
    entries, found = api_entries(site), []
    for n in names:
        if n.lower() not in entries: continue
        target = entries[n.lower()]
        for f in sorted(site.glob('*.html'), key=lambda f: f.name == target):  # another page's link first
            href = f'{target}#{n.lower()}' if f'href="{target}#{n.lower()}"' in f.read_text() else None
            if href or f'href="#{n.lower()}"' in f.read_text(): found.append((f.name, href or f'#{n.lower()}', target)); break
    return found

def serve(site):
    "A local HTTP server for `site`, as `python -m http.server` would serve it; returns (server, base url)"
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f'http://127.0.0.1:{srv.server_address[1]}/'

def check_page(tab, url, name, shots, size):
    "Open `url`, wait for MathJax, take a screenshot; return what it saw and the problems found"
    tab.errors.clear()
    mj = tab.goto(url)
    info = tab.js(INSPECT)
    problems = [] if mj == 'ok' else [mj]
    if info['text'] < 200: problems.append(f'page looks empty ({info["text"]} characters of text)')
    if not info['h1']: problems.append('no title heading')
    if info['mathErrors']: problems.append(f'{info["mathErrors"]} math error(s) from MathJax')
    problems += [f'raw math/directive text: {l!r}' for l in info['leaks']]
    problems += [f'image did not load: {s}' for s in info['brokenImages']]
    problems += [f'signature {w}' for w in info['wrapped']]
    if info['nav'] < 1: problems.append('no navigation links')
    if size == 'phone' and info['overflow'] > 2: problems.append(f'page scrolls sideways by {info["overflow"]}px on a phone')
    if info['code'] and not info['tokens']: problems.append('code blocks are not highlighted')
    tab.pump(0.3)
    problems += tab.errors
    shots.mkdir(parents=True, exist_ok=True)
    tab.screenshot(shots/f'{Path(name).stem}-{size}.png')
    return info, problems

def check_search(tab, names):
    "Search the site from the page open in `tab`: the chapters, then each API name's own entry, as clean text"
    res = tab.js(f'({SEARCH})("optimizer")')
    problems = [] if res else ['search for "optimizer" found nothing']
    entries = api_entries(Path(tab.site))
    for n in [n for n in names if n.lower() in entries]:
        res = tab.js(f'({SEARCH})({json.dumps(n)})') or []
        own = [r for r in res if r['href'].split('#')[-1] == n.lower() and '#' in r['href']]
        if not own: problems.append(f'search for {n!r} does not show its API entry {entries[n.lower()]}#{n.lower()}')
        problems += [f'search for {n!r}: result {r["href"]} is shown as broken markup ({r["title"][:40]!r})' for r in res if r['broken']]
    return problems

def check_jumps(tab, root, links):
    "Follow links to API entries as a reader clicks them; the entry must end up at the top of the window"
    problems, seen = [], []
    for page, href, target in links:
        tab.goto(root + page)
        tab.loaded = False
        tab.js(f"document.querySelector('a[href=\"{href}\"]').click()")
        if not href.startswith('#'): tab.wait_load()
        tab.pump(0.5)
        top = tab.js(f"Math.round(document.querySelector('.nbdev-anchor[id=\"{href.split('#')[1]}\"]').getBoundingClientRect().top)")
        seen.append(f'{href}:{top}px')
        if top is None or not 0 <= top <= MAX_JUMP_PX:
            problems.append(f'link {href} on {page} leaves its entry {top}px from the top of the window')
    return problems, seen

def run(site, pages, shots, chromium, modes=('file', 'http')):
    site, shots = Path(site).resolve(), Path(shots)
    srv, base = serve(site) if 'http' in modes else (None, None)
    tab, failed = Chromium(chromium), 0
    tab.site = site
    try:
        for mode in modes:
            root = site.as_uri() + '/' if mode == 'file' else base
            for size, dims in SIZES.items():
                tab.resize(*dims)
                for name in pages:
                    info, probs = check_page(tab, root + name, name, shots/mode, size)
                    extra = ''
                    if name == 'index.html' and size == 'desktop':
                        probs += check_search(tab, SEARCH_NAMES)
                        jp, seen = check_jumps(tab, root, jump_links(site))
                        probs, extra = probs + jp, f" jumps={','.join(seen)}"
                    failed += bool(probs)
                    print(f"{'FAIL' if probs else 'ok  '} {mode:4} {size:7} {name}: text={info['text']} math={info['math']} "
                          f"code={info['code']} tokens={info['tokens']} images={info['images']} nav={info['nav']} "
                          f"signatures={info['sigs']}{extra}")
                    for p in probs: print(f'       - {p}')
    finally:
        tab.close()
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
    if not exe: print('browser check skipped: no Chromium found (apt-get install -y chromium)'); return 2
    site = Path(a.site)
    if not (site/'index.html').exists(): print(f'no site at {site}: build it with `python tools/docs.py`'); return 1
    pages = [p for p in a.pages.split(',') if p] or pick_pages(site)
    failed = run(site, pages, a.out, exe, modes=tuple(a.modes.split(',')))
    print(f'browser check: {"ok" if not failed else f"{failed} page view(s) failed"}; screenshots in {a.out}')
    return 1 if failed else 0

if __name__ == '__main__': sys.exit(main())
