#!/usr/bin/env python
"""Build optlib's docs site offline into `_docs/`: `python tools/docs.py`.

Quarto (nbdev's renderer) cannot be installed everywhere, so this builds the same site from registry packages only:

1. nbdev's own notebook processors (what `nbdev_proc_nbs` feeds Quarto: `show_doc` rendered, export/hide cells
   removed, backticked names linked) run on every notebook of `nbs/`, two at a time, cached by content.
   Nothing is re-executed for its outputs: the committed outputs and plots are shown; only the cells nbdev needs
   for `show_doc` (exports, imports, definitions) run, as in nbdev's own docs build, and only `show_doc` cells
   get new outputs.
2. The Quarto-only syntax left in them is converted (front matter, `#|` directives, fenced divs, link attributes,
   absolute doc links to this site made relative, anchors for `show_doc` headings).
3. Material for MkDocs with mkdocs-jupyter (its config generated under `.cache/docs/`, with this file as its
   hooks module) renders them into a static site that works from disk (`file://`) and
   from `python -m http.server`, with MathJax 3 and the search shim served from the site itself (fetched once
   from the npm registry into `.cache/docs/`).

`--check` then verifies the site (a page per chapter, the API reference, internal links, no leaked syntax);
`--sidebar` writes `nbs/sidebar.yml` (Quarto's sidebar, for the GitHub Pages path) from the notebook list.
"""
import argparse, hashlib, html, json, os, re, shutil, subprocess, sys, tarfile, tempfile, time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT/'.cache'/'docs'
BUILD_VERSION = '3'  # bump when the processing or conversion below changes what it writes
NPM_ASSETS = {  # npm package -> {file in the package: path under the site's assets/}
    'mathjax@3.2.2': {'es5/tex-svg-full.js': 'mathjax/tex-svg-full.js', 'LICENSE': 'mathjax/LICENSE'},
    'iframe-worker@1.0.4': {'shim/index.js': 'iframe-worker/shim.js', 'LICENSE': 'iframe-worker/LICENSE'},
}
SITE_MARK = '.optlib-docs'  # marks an output folder as ours, so a rebuild may empty it
TOC_DEPTH = 3  # headings listed in a page's table of contents (Quarto's default)

def log(*a):
    print('docs:', *a, file=sys.stderr, flush=True)

# ---------------------------------------------------------------- notebooks and pages

def page_stem(nb):
    "The page name nbdev gives notebook `nb` (its doc links point there): `08_learner.ipynb` -> `learner`"
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', Path(nb).stem.lower())

def chapters(nbs):
    "The notebooks of the site in course order: `index.ipynb` first, then every other one not starting with `_`"
    nbs = sorted(p for p in Path(nbs).glob('*.ipynb') if not p.name.startswith(('_', '.')))
    return sorted(nbs, key=lambda p: (p.name != 'index.ipynb', p.name))

def sidebar_yml(nbs):
    "nbdev's custom Quarto sidebar (`nbs/sidebar.yml`) listing the chapters in course order"
    return 'website:\n  sidebar:\n    contents:\n' + ''.join(f'      - {p.name}\n' for p in chapters(nbs))

def write_sidebar(nbs):
    p = Path(nbs)/'sidebar.yml'
    p.write_text(sidebar_yml(nbs))
    return p

def find_config(nbs):
    "nbdev's config for notebooks in `nbs`: the nearest settings.ini above them, else this repository's"
    from nbdev.config import get_config
    d = next((d for d in [Path(nbs).resolve(), *Path(nbs).resolve().parents] if (d/'settings.ini').exists()), ROOT)
    old = os.getcwd()
    os.chdir(d)  # nbdev looks for settings.ini from the working directory first
    try: return get_config(path=d)
    finally: os.chdir(old)

# ---------------------------------------------------------------- step 1: nbdev's processors (in worker processes)

class _LocalEntryPoint:
    "Stands for the project's `nbdev` entry point, so its names link even when the project isn't pip-installed"
    def __init__(self, name, d):
        from types import SimpleNamespace
        self.name, self._d, self.dist = name, d, SimpleNamespace(name=name)
    def load(self): return self._d

def _use_local_modidx(cfg):
    "Make nbdev's link lookup read the project's `_modidx.py` from the work tree rather than an installed copy"
    import runpy, nbdev.doclinks as dl
    f = Path(cfg.lib_path)/'_modidx.py'
    if not f.exists(): return
    d, name, orig = runpy.run_path(str(f))['d'], Path(cfg.lib_path).name, dl.entry_points
    def eps(*a, **kw):
        return [e for e in orig(*a, **kw) if e.name != name] + [_LocalEntryPoint(name, d)]
    dl.entry_points = eps
    dl._build_lookup_table.cache_clear()

def _proc_one(src, dst, root):
    "Run nbdev's docs processors on notebook `src` (cwd and imports at project `root`), write it to `dst`"
    os.chdir(root)
    if str(root) not in sys.path: sys.path.insert(0, str(root))
    os.environ['IN_TEST'] = '1'
    os.environ.setdefault('MPLBACKEND', 'Agg')
    import nbdev.processors as P
    from execnb.nbio import read_nb, write_nb
    from nbdev.config import get_config
    _use_local_modidx(get_config())

    def mv_exports(nb):  # nbdev's `mv_exports`, safe when an `exports` cell is the last one left
        cells = nb.cells
        for cell in reversed([c for c in cells if c.cell_type == 'code' and 'exports' in c.directives_]):
            i = cells.index(cell)
            if i+1 < len(cells) and getattr(cells[i+1], 'has_sd', 0): cells[i], cells[i+1] = cells[i+1], cells[i]

    class run_for_docs(P.exec_show_docs):
        """nbdev's `exec_show_docs`, except that only `show_doc` cells get new outputs (the others keep their
        committed outputs), and a cell mixing imports with other code runs only its imports and definitions
        (all of it if that fails): its results are not shown, so a training loop there need not run again"""
        def __call__(self, cell):
            from fastcore.basics import str2bool
            if not self.nb.has_docs_ or not hasattr(self, 'k'): return
            fm = getattr(self.nb, 'frontmatter_', {})
            if str2bool(fm.get('skip_showdoc', False)) or not P._do_eval(cell): return
            trees = cell.parsed_()
            if P._show_docs(trees): self.k.cell(cell)
            else:
                lite = None if cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'} else _lite(cell.source)
                if lite is not None: self.k.run(lite)
                if lite is None or self.k.exc: self.k.run(cell.source)
            if self.k.exc:
                title = fm.get('title', '')
                raise Exception(f"Error{' in notebook: '+title if title else ''} in cell {cell.idx_} :\n{cell.source}") from self.k.exc

    class Procs(P.FilterDefaults):
        def base_procs(self):
            return [run_for_docs if p is P.exec_show_docs else p for p in super().base_procs() if p is not P.mv_exports]
    import warnings
    nb, t0, main = read_nb(src), time.time(), sys.modules['__main__']
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter('always')
            Procs()(nb)
    except Exception as e:
        cause = f'\n{type(e.__cause__).__name__}: {e.__cause__}' if e.__cause__ else ''
        hint = ''
        if any('imports and other code' in str(w.message) for w in warned) and isinstance(e.__cause__, NameError):
            hint = ('\nnbdev runs every cell that imports something to render `show_doc` (Quarto\'s `nbdev_docs` '
                    'does the same and fails the same way); this cell also uses names from cells that are not run. '
                    'Put its imports in a cell of their own (nbdev FAQ: "imports and other code").')
        raise RuntimeError(f'nbdev could not process {src}: {e}{cause}{hint}') from None
    finally: sys.modules['__main__'] = main  # IPython's shell replaces it; put it back for the next notebook
    mv_exports(nb)
    write_nb(nb, dst)
    notes = sorted({str(w.message).split('\n')[0] for w in warned})
    return str(src), time.time() - t0, notes

def _lite(src):
    "The imports and definitions of a cell that also does other things (None if it does nothing else, or won't parse)"
    import ast
    try: tree = ast.parse(src)
    except SyntaxError: return None
    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    if all(isinstance(n, keep) for n in tree.body): return None
    lines = src.splitlines()
    return '\n'.join('\n'.join(lines[min([n.lineno] + [d.lineno for d in getattr(n, 'decorator_list', [])]) - 1:
                                     n.end_lineno]) for n in tree.body if isinstance(n, keep))

def _key(nb, cfg):
    import nbdev
    h = hashlib.sha256(BUILD_VERSION.encode() + nbdev.__version__.encode() + Path(nb).read_bytes())
    for f in [Path(cfg.config_file), Path(cfg.lib_path)/'_modidx.py']:
        if f.exists(): h.update(f.read_bytes())
    return h.hexdigest()[:20]

_MARK = '@@optlib-docs-result@@ '

def _worker():
    "`--proc-worker`: process the notebooks named on stdin (one JSON task a line), answering each on stdout"
    for line in sys.stdin:
        src, dst, root = json.loads(line)
        try:
            _, secs, notes = _proc_one(src, dst, root)
            res = {'ok': True, 'src': src, 'secs': secs, 'notes': notes}
        except Exception as e: res = {'ok': False, 'src': src, 'error': str(e)}
        sys.stdout.write(_MARK + json.dumps(res) + '\n'); sys.stdout.flush()

def process(nbs, cfg, cache, workers=2, force=False):
    "Processed copies of the chapters (cached by content), as {notebook: processed file}"
    import queue, threading
    cache.mkdir(parents=True, exist_ok=True)
    for f in cache.glob('*.tmp'): f.unlink()  # left by an interrupted build
    out, todo = {}, queue.Queue()
    for nb in chapters(nbs):
        dst = cache/f'{nb.stem}.{_key(nb, cfg)}.ipynb'
        out[nb] = dst
        if force or not dst.exists(): todo.put((str(nb), str(dst) + '.tmp', str(cfg.config_path)))
    n, results = todo.qsize(), []
    def drive():  # one worker process per thread, fed one notebook at a time
        p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), '--proc-worker'], cwd=cfg.config_path,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, 'MPLBACKEND': 'Agg'})
        try:
            while True:
                try: task = todo.get_nowait()
                except queue.Empty: break
                p.stdin.write(json.dumps(task) + '\n'); p.stdin.flush()
                res = next((json.loads(l[len(_MARK):]) for l in p.stdout if l.startswith(_MARK)),
                           {'ok': False, 'src': task[0], 'error': 'the worker process died'})
                results.append(res)
                if res['ok']: log(f"  {Path(res['src']).name} {res['secs']:.1f}s" + ''.join(f' (nbdev: {x})' for x in res['notes']))
                else: break
        finally:
            p.stdin.close(); p.wait()
    if n:
        log(f'processing {n} notebook(s) with nbdev ({len(out)-n} cached)')
        threads = [threading.Thread(target=drive) for _ in range(max(1, min(workers, n)))]
        for t in threads: t.start()
        for t in threads: t.join()
        errors = [r['error'] for r in results if not r['ok']]
        if errors: raise SystemExit('docs: ' + '\n\n'.join(errors))
        for nb, dst in out.items():
            if Path(str(dst) + '.tmp').exists(): os.replace(str(dst) + '.tmp', dst)
    live = set(out.values())
    for f in cache.glob('*.ipynb'):
        if f not in live: f.unlink()
    return out

# ---------------------------------------------------------------- step 2: Quarto-only syntax -> plain notebooks

_re_directive = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_re_fence_div = re.compile(r'^:::+\s*(\{[^}]*\}|[\w-]+)?\s*$')
_re_attrs = re.compile(r'(\]\([^)\s]*\))\{[^}\n]*\}')
_re_sd_heading = re.compile(r'^(#{2,6})\s+(\S.*?)\s*$', re.M)

def _src(c): return ''.join(c.get('source', ''))

def directives(source):
    "The `#| key: value` lines of a code cell as a dict, and the source without them"
    d, keep = {}, []
    for line in source.splitlines():
        m = _re_directive.match(line)
        if m: d[m.group(1)] = m.group(2).strip('"\'')
        else: keep.append(line)
    return d, '\n'.join(keep).strip('\n')

def _fenced_divs(md):
    "Quarto fenced divs (`::: {.callout-note}` ... `:::`) -> HTML divs whose inside is still markdown"
    out, depth, fence = [], 0, None
    for line in md.split('\n'):
        s = line.strip()
        if fence is None and s[:3] in ('```', '~~~'): fence = s[:3]
        elif fence and s.startswith(fence): fence = None
        m = None if fence else _re_fence_div.match(s)
        if m and (m.group(1) or depth):
            if m.group(1):
                classes = ' '.join(re.findall(r'\.([\w-]+)', m.group(1))) or m.group(1).strip('{}')
                out += [f'<div class="qdiv {html.escape(classes)}">', '']
                depth += 1
            else:
                out += ['', '</div>']
                depth -= 1
            continue
        out.append(line)
    return '\n'.join(out + ['', '</div>'] * depth)

_re_code = re.compile(r'(^[ \t]*(```|~~~).*?^[ \t]*\2[^\n]*$|`[^`\n]+`)', re.S | re.M)

def _outside_code(md, f):
    "Apply `f` to the parts of markdown `md` that are not code (fenced blocks or inline code)"
    parts, last = [], 0
    for m in _re_code.finditer(md):
        parts += [f(md[last:m.start()]), m.group(0)]
        last = m.end()
    return ''.join(parts + [f(md[last:])])

def _prose(t, site_prefixes):
    t = _re_attrs.sub(r'\1', t)
    # Jupyter renders \( \) and \[ \] as math, but markdown eats their backslashes: use $ and $$ instead
    t = re.sub(r'(?<!\\)\\\((.+?)\\\)', lambda m: f'${m.group(1).strip()}$', t, flags=re.S)
    t = re.sub(r'(?<!\\)\\\[(.+?)\\\]', lambda m: f'$${m.group(1)}$$', t, flags=re.S)
    for p in site_prefixes: t = t.replace(p, '')
    return t

def md_text(md, site_prefixes):
    "Markdown from nbdev/Quarto -> markdown for nbconvert: plain links, relative site links, math, fenced divs as HTML"
    return _fenced_divs(_outside_code(md, lambda t: _prose(t, site_prefixes)))

def anchor(name): return name.strip('`').lower()

_re_source = re.compile(r'\[source\]\(([^)\s]+)\)(\{[^}\n]*\})?')

def _showdoc_md(md, site_prefixes):
    "A `show_doc` output: nbdev's anchor (`#name` lower-cased, as Quarto makes it) before each heading"
    md = _re_source.sub(lambda m: f'<a class="nbdev-source" href="{html.escape(m.group(1))}" target="_blank" '
                                  f'rel="noopener">source</a>', md)
    md = md_text(md, site_prefixes)
    return _re_sd_heading.sub(lambda m: f'<a class="nbdev-anchor" id="{html.escape(anchor(m.group(2)))}"></a>\n\n'
                                            f'{m.group(1)} {m.group(2)}', md)

def front_matter(cells):
    "Quarto front matter (the raw `---` cell nbdev's processors leave first) as a dict, and the remaining cells"
    import yaml
    if cells and cells[0]['cell_type'] == 'raw' and _src(cells[0]).lstrip().startswith('---'):
        body = _src(cells[0]).strip().strip('-')
        try: fm = yaml.safe_load(body) or {}
        except yaml.YAMLError: fm = {}
        return (fm if isinstance(fm, dict) else {}), cells[1:]
    return {}, cells

def convert(nb, site_prefixes, default_title):
    "A processed notebook (dict) -> one mkdocs-jupyter renders as nbdev's Quarto site would show it; also its title"
    fm, cells = front_matter(nb['cells'])
    title = str(fm.get('title') or default_title)
    head = f'# {title}\n'
    if fm.get('description'): head += f'\n> {md_text(str(fm["description"]), site_prefixes)}\n'
    out = [{'cell_type': 'markdown', 'metadata': {}, 'source': head}]
    for c in cells:
        src = _src(c)
        if c['cell_type'] == 'raw': continue  # raw cells are for Quarto/LaTeX only
        if c['cell_type'] == 'markdown':
            if src.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
            out.append({'cell_type': 'markdown', 'metadata': {}, 'source': md_text(src, site_prefixes)})
            continue
        d, src = directives(src)
        if d.get('include', '').lower() == 'false': continue
        outputs = [] if d.get('output', '').lower() == 'false' else c.get('outputs', [])
        is_sd = bool(re.match(r'\s*show_doc\(', src))
        for o in outputs:
            data = o.get('data', {})
            if 'text/markdown' in data:
                md = ''.join(data['text/markdown'])
                data['text/markdown'] = _showdoc_md(md, site_prefixes) if is_sd else md_text(md, site_prefixes)
                if is_sd or d.get('output') == 'asis': data.pop('text/plain', None)
        tags = ['remove_input'] if (d.get('echo', '').lower() == 'false' or not src.strip()) else []
        if not outputs and tags: continue
        meta = {'tags': tags} if tags else {}
        if is_sd: meta['tags'] = tags + (['showdoc'] if 'showdoc' not in tags else [])
        out.append({'cell_type': 'code', 'metadata': meta, 'source': src, 'outputs': outputs,
                    'execution_count': c.get('execution_count')})
    meta = {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'},
            'language_info': {'name': 'python'}}
    return {'cells': out, 'metadata': meta, 'nbformat': 4, 'nbformat_minor': 4}, title

def symbol_links(cfg):
    "The relative doc links (`page.html#anchor`) nbdev's index gives the project's names"
    import runpy
    f = Path(cfg.lib_path)/'_modidx.py'
    if not f.exists(): return set()
    syms = runpy.run_path(str(f))['d'].get('syms', {})
    return {v[0] if isinstance(v, (tuple, list)) else v for mod in syms.values() for v in mod.values()}

_re_page_link = re.compile(r'\]\(([\w.-]+\.html)#([^)\s]+)\)')

def fix_symbol_links(pages, links):
    """Point links to names that have no `show_doc` entry of their own (nbdev indexes every method, Quarto then
    lands on the page's top) at their class's entry instead, or at the page"""
    anchors = {p: {c for c in _showdoc_anchors(nb)} for p, nb in pages.items()}
    def fix(m):
        page, frag = m.group(1), m.group(2)
        if page not in anchors or f'{page}#{frag}' not in links or frag in anchors[page]: return m.group(0)
        parts = frag.split('.')
        while len(parts) > 1:
            parts.pop()
            if '.'.join(parts) in anchors[page]: return f"]({page}#{'.'.join(parts)})"
        return f']({page})'
    for nb in pages.values():
        for c in nb['cells']:
            if c['cell_type'] == 'markdown': c['source'] = _re_page_link.sub(fix, c['source'])
            for o in c.get('outputs', []):
                d = o.get('data', {})
                if 'text/markdown' in d: d['text/markdown'] = _re_page_link.sub(fix, d['text/markdown'])

def _showdoc_anchors(nb):
    for c in nb['cells']:
        for o in c.get('outputs', []):
            yield from re.findall(r'class="nbdev-anchor" id="([^"]+)"', o.get('data', {}).get('text/markdown', ''))

_re_style = re.compile(r'<style[^>]*>(.*?)</style>', re.S)
_styles = {}  # the notebook CSS nbconvert inlines in every page, written once as assets/nb-<hash>.css

def on_config(config, **kw):
    "MkDocs hook: skip mkdocs-jupyter's second conversion of each notebook (to markdown, for a TOC made below)"
    import mkdocs_jupyter.plugin as mj
    if hasattr(mj, '_get_nb_toc_tokens'): mj._get_nb_toc_tokens = lambda fpath, toc_depth: ([], None)
    _styles.clear()
    return config

def on_post_build(config, **kw):
    for h, css in _styles.items():
        f = Path(config['site_dir'])/'assets'/f'nb-{h}.css'
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(css, encoding='utf-8')

def _shared_style(m, prefix):
    css = m.group(1)
    if len(css) < 2000: return m.group(0)
    h = hashlib.sha256(css.encode()).hexdigest()[:10]
    _styles[h] = css
    return f'<link rel="stylesheet" href="{prefix}assets/nb-{h}.css">'

_re_heading = re.compile(r'<h([1-6])\b[^>]*?\bid="([^"]+)"[^>]*>(.*?)</h\1>', re.S)

def on_page_content(html_text, page, config, files, **kw):
    """MkDocs hook: a notebook page's table of contents from the headings of its rendered HTML, so every entry
    links to an id that exists (mkdocs-jupyter's own drops inline code from the ids), `show_doc` entries included"""
    from mkdocs.structure.toc import get_toc
    if not page.file.src_path.endswith('.ipynb'): return html_text
    tokens, stack = [], []
    for m in _re_heading.finditer(html_text):
        level = int(m.group(1))
        if level > TOC_DEPTH: continue
        name = html.unescape(re.sub(r'<[^>]+>', '', m.group(3))).replace('\u00b6', '').strip()
        tok = {'level': level, 'id': html.unescape(m.group(2)), 'name': html.escape(name), 'children': []}
        while stack and stack[-1]['level'] >= level: stack.pop()
        (stack[-1]['children'] if stack else tokens).append(tok)
        stack.append(tok)
    page.toc = get_toc(tokens)
    prefix = '../' * page.file.dest_uri.count('/')
    return _re_style.sub(lambda m: _shared_style(m, prefix), html_text)

# ---------------------------------------------------------------- static assets

def npm_assets(dest, cache=CACHE/'npm'):
    "Copy MathJax and iframe-worker into `dest`, fetching the pinned packages from the npm registry once"
    cache.mkdir(parents=True, exist_ok=True)
    for spec, files in NPM_ASSETS.items():
        name, ver = spec.rsplit('@', 1)
        tgz = cache/f'{name}-{ver}.tgz'
        if not tgz.exists():
            npm = shutil.which('npm')
            if not npm: raise SystemExit(f'docs: npm is needed once to fetch {spec} (into {cache}); install Node.js/npm')
            log(f'fetching {spec} from the npm registry')
            with tempfile.TemporaryDirectory() as td:
                r = subprocess.run([npm, 'pack', spec, '--silent', '--pack-destination', td],
                                   capture_output=True, text=True)
                got = list(Path(td).glob('*.tgz'))
                if r.returncode or not got: raise SystemExit(f'docs: `npm pack {spec}` failed:\n{r.stderr[-2000:]}')
                shutil.move(str(got[0]), tgz)
        with tarfile.open(tgz) as tf:
            for member, out in files.items():
                f = tf.extractfile(f'package/{member}')
                (dest/out).parent.mkdir(parents=True, exist_ok=True)
                (dest/out).write_bytes(f.read())

MATHJAX_LOADER = r"""// MathJax 3 (SVG output: no web fonts to load, so it works from file:// too), served from this site
(function () {
  if (window.MathJax && window.MathJax.startup) return;   // every notebook block on a page includes this file
  var here = document.currentScript && document.currentScript.src;
  window.MathJax = {
    tex: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']],
          processEscapes: true, processEnvironments: true, tags: 'ams'},
    svg: {fontCache: 'global'},
    options: {ignoreHtmlClass: 'tex2jax_ignore', processHtmlClass: 'tex2jax_process'},
    startup: {typeset: true, elements: ['.md-content']}
  };
  var s = document.createElement('script');
  s.src = here ? here.replace(/[^\/]*$/, '') + 'mathjax/tex-svg-full.js' : 'assets/mathjax/tex-svg-full.js';
  s.async = true; s.id = 'MathJax-script';
  document.head.appendChild(s);
})();
"""

EXTRA_CSS = """/* optlib docs: notebooks inside Material for MkDocs */
.md-grid { max-width: 76rem; }
.md-typeset .jupyter-wrapper img, .md-typeset .jupyter-wrapper svg:not(mjx-container svg) { max-width: 100%; height: auto; }
.md-typeset .jupyter-wrapper .jp-OutputArea-output { overflow-x: auto; }
.md-typeset .jupyter-wrapper .jp-RenderedHTMLCommon { font-size: inherit; }
.md-typeset .jupyter-wrapper blockquote { border-left: .2rem solid var(--md-default-fg-color--lighter); color: var(--md-default-fg-color--light); }
.md-typeset .jupyter-wrapper h1 + blockquote { font-size: 1.1em; margin-top: 0; }
.md-typeset mjx-container[display="true"] { overflow-x: auto; overflow-y: hidden; }
.md-typeset .jupyter-wrapper .celltag_showdoc .jp-OutputArea-output hr { margin: 1.5em 0 .5em; }
.md-typeset .jupyter-wrapper a.nbdev-source { float: right; font-size: .8em; }
.md-typeset .jupyter-wrapper .qdiv { border-left: .25rem solid var(--md-primary-fg-color); padding: .2em 1em; margin: 1em 0; background: var(--md-code-bg-color); }
@media screen and (max-width: 44.9375em) {
  .md-typeset .jupyter-wrapper .jp-InputArea-editor, .md-typeset .jupyter-wrapper pre { font-size: .72rem; }
}
"""

# ---------------------------------------------------------------- step 3: the site

def mkdocs_yml(cfg, nav, src, out, cache):
    import yaml
    git_url = cfg.get('git_url', '')
    conf = {
        'site_name': cfg.get('title', cfg.get('lib_name')),
        'site_description': cfg.get('description', ''),
        'docs_dir': str(src), 'site_dir': str(out), 'use_directory_urls': False,
        'nav': [{t: f} for t, f in nav],
        'theme': {'name': 'material', 'font': False, 'language': 'en',
                  'palette': {'primary': 'indigo', 'accent': 'indigo'},
                  'features': ['navigation.footer', 'navigation.top', 'toc.follow', 'search.highlight',
                               'content.code.copy']},
        'plugins': [{'search': {}}, {'offline': {}},
                    {'mkdocs-jupyter': {'include': ['*.ipynb'], 'execute': False, 'no_prompt': True,
                                        'ignore_h1_titles': True, 'toc_depth': TOC_DEPTH, 'include_requirejs': False,
                                        'remove_tag_config': {'remove_input_tags': ['remove_input']},
                                        'custom_mathjax_url': 'assets/mathjax-loader.js',
                                        'cache': True, 'cache_dir': str(cache/'mkdocs-jupyter')}}],
        'extra': {'polyfills': ['assets/iframe-worker/shim.js'], 'generator': False,
                  'social': [{'icon': 'fontawesome/brands/github', 'link': git_url}] if git_url else []},
        'extra_css': ['assets/optlib-docs.css'],
        'hooks': [str(Path(__file__).resolve())],
    }
    return yaml.safe_dump(conf, sort_keys=False, allow_unicode=True)

def _site_prefixes(cfg):
    host, base = cfg.get('doc_host', '').rstrip('/'), cfg.get('doc_baseurl', '').strip('/')
    url = f'{host}/{base}/' if base else f'{host}/'
    return [url] if host else []

def _fallback_index(cfg, nav):
    "A home page for a tree that has no `nbs/index.ipynb` yet"
    items = ''.join(f'- [{t}]({f.replace(".ipynb", ".html")})\n' for t, f in nav)
    md = f"# {cfg.get('title', 'docs')}\n\n> {cfg.get('description', '')}\n\n## Chapters\n\n{items}"
    return {'cells': [{'cell_type': 'markdown', 'metadata': {}, 'source': md}],
            'metadata': {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'},
                         'language_info': {'name': 'python'}}, 'nbformat': 4, 'nbformat_minor': 4}

_ASSET_EXTS = {'.png', '.jpg', '.jpeg', '.gif', '.svg', '.webp', '.pdf', '.mp4'}

def build(nbs=None, out=None, workers=2, force=False, sidebar=True):
    "Build the site from the notebooks in `nbs` into `out`; returns the output folder"
    t0 = time.time()
    nbs = Path(nbs or ROOT/'nbs').resolve()
    out = Path(out or ROOT/'_docs').resolve()
    cfg = find_config(nbs)
    sb = nbs/'sidebar.yml'
    if sidebar and nbs == (ROOT/'nbs').resolve() and (not sb.exists() or sb.read_text() != sidebar_yml(nbs)):
        write_sidebar(nbs)
        log(f'updated {sb.relative_to(ROOT)} (Quarto\'s sidebar) to the chapters in {nbs.name}/')
    cache = CACHE/hashlib.sha256(str(nbs).encode()).hexdigest()[:12]
    if force and cache.exists(): shutil.rmtree(cache)
    if out.exists() and any(out.iterdir()) and not (out/SITE_MARK).exists():
        raise SystemExit(f'docs: {out} is not empty and was not built by this script; not overwriting it')
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix='site-', dir=cache))  # this build's mkdocs.yml and docs folder
    try: return _build(nbs, out, cfg, cache, work, workers, force, t0)
    finally: shutil.rmtree(work, ignore_errors=True)

def _build(nbs, out, cfg, cache, work, workers, force, t0):
    src = work/'src'
    (src/'assets').mkdir(parents=True)
    names = {}
    for nb in chapters(nbs):
        stem = page_stem(nb)
        if stem in names: raise SystemExit(f'docs: {nb.name} and {names[stem].name} would both be {stem}.html')
        names[stem] = nb
    procd = process(nbs, cfg, cache/'proc', workers=workers, force=force)
    t1 = time.time()
    prefixes, nav, pages = _site_prefixes(cfg), [], {}
    for nb, pnb in procd.items():
        conv, title = convert(json.loads(pnb.read_text(encoding='utf-8')), prefixes, nb.stem)
        pages[f'{page_stem(nb)}.html'] = conv
        nav.append(('Home' if nb.name == 'index.ipynb' else title, f'{page_stem(nb)}.ipynb'))
    fix_symbol_links(pages, symbol_links(cfg))
    for page, conv in pages.items():
        (src/page.replace('.html', '.ipynb')).write_text(json.dumps(conv, indent=1), encoding='utf-8')
    if not (src/'index.ipynb').exists():
        (src/'index.ipynb').write_text(json.dumps(_fallback_index(cfg, nav)), encoding='utf-8')
        nav.insert(0, ('Home', 'index.ipynb'))
    for f in nbs.rglob('*'):  # images and other files the notebooks' markdown refers to
        rel = f.relative_to(nbs)
        if f.is_file() and f.suffix.lower() in _ASSET_EXTS and not any(p.startswith(('.', '_')) for p in rel.parts):
            (src/rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, src/rel)
    npm_assets(src/'assets')
    (src/'assets'/'mathjax-loader.js').write_text(MATHJAX_LOADER)
    (src/'assets'/'optlib-docs.css').write_text(EXTRA_CSS)
    yml = work/'mkdocs.yml'
    yml.write_text(mkdocs_yml(cfg, nav, src, out, cache))
    log(f'rendering {len(nav)} page(s) with mkdocs')
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--clean', '-q', '-f', str(yml)], cwd=work,
                       capture_output=True, text=True, env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})
    if r.returncode: raise SystemExit(f'docs: mkdocs failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}')
    for line in r.stderr.splitlines():
        if 'WARNING' in line or 'ERROR' in line: log('mkdocs:', line)
    (out/SITE_MARK).write_text('built by tools/docs.py\n')
    log(f'built {out} in {time.time()-t0:.1f}s (nbdev {t1-t0:.1f}s, site {time.time()-t1:.1f}s)')
    return out

# ---------------------------------------------------------------- --check

_BLOCK = set('address article aside blockquote body br dd details div dl dt figcaption figure footer form h1 h2 h3 h4 '
             'h5 h6 header hr li main nav ol p section summary table tbody td tfoot th thead tr ul'.split())
_RAW = {'script', 'style', 'template', 'noscript', 'svg', 'textarea'}
_CODE = {'pre', 'code'}
_VOID = set('area base br col embed hr img input link meta param source track wbr'.split())

class _Page(HTMLParser):
    "What `--check` needs of one HTML page: ids, links, loaded resources, and its text split by kind"
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.links, self.resources = set(), [], []
        self.stack, self.prose, self.code, self.cur = [], [], [], []
    def _flush(self):
        if self.cur: self.prose.append(''.join(self.cur)); self.cur = []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ('id', 'name'):
            if a.get(k) and (k == 'id' or tag == 'a'): self.ids.add(a[k])
        if tag == 'a' and a.get('href') is not None: self.links.append(a['href'])
        if tag in ('script', 'img', 'iframe', 'source') and a.get('src'): self.resources.append(a['src'])
        if tag == 'link' and a.get('href') and 'stylesheet' in (a.get('rel') or ''): self.resources.append(a['href'])
        if tag in _BLOCK: self._flush()
        if tag not in _VOID: self.stack.append(tag)
    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self.stack and self.stack[-1] == tag: self.stack.pop()
    def handle_endtag(self, tag):
        if tag in _BLOCK: self._flush()
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag: pass
    def handle_data(self, data):
        st = set(self.stack)
        if st & _RAW: return
        if st & _CODE: self.code.append(data)
        else: self.cur.append(data)
    def close(self):
        super().close(); self._flush()

def parse_page(f):
    p = _Page(); p.feed(Path(f).read_text(encoding='utf-8')); p.close()
    return p

_re_math = re.compile(r'\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)|(?<![\\$])\$(?!\$)(?:\\\$|[^$])+?(?<!\\)\$', re.S)
_re_leak = re.compile(r'\$\$|\\\(|#\||\\(?:frac|sum|theta|alpha|beta|eta|lambda|nabla|left|right|mathbf|mathrm|sqrt|cdot)\b')

def leaks(page):
    "Quarto/notebook syntax a reader would see: `$$`, `\\(` outside what MathJax typesets, `#|`, `:::`, `{target=`"
    found = []
    for t in page.prose:
        rest = _re_math.sub(' ', t)
        found += [f'{m.group(0)!r} in {t.strip()[:80]!r}' for m in _re_leak.finditer(rest)]
        found += [f'fenced div in {t.strip()[:80]!r}' for _ in re.finditer(r'^\s*:::', t, re.M)]
        found += [f'link attributes in {t.strip()[:80]!r}' for _ in re.finditer(r'\{target=', t)]
    for t in page.code:
        found += [f'{m.group(0)!r} in code {t.strip()[:80]!r}' for m in re.finditer(r'^\s*#\|', t, re.M)]
    return found

def api_names(lib='optlib'):
    """The public classes and functions defined in the library, as {name: object}: those of `{lib}.all`'s namespace,
    or, until `{lib}/all.py` exists, those in the `__all__` of each module nbdev exported"""
    import importlib, inspect, runpy
    sys.path.insert(0, str(ROOT))
    try:
        if (ROOT/lib/'all.py').exists(): ns = vars(importlib.import_module(f'{lib}.all'))
        else:
            ns = {}
            for mod in runpy.run_path(str(ROOT/lib/'_modidx.py'))['d']['syms']:
                m = importlib.import_module(mod)
                ns.update({n: getattr(m, n) for n in getattr(m, '__all__', []) if hasattr(m, n)})
    finally: sys.path.remove(str(ROOT))
    return {n: o for n, o in ns.items() if not n.startswith('_') and (inspect.isclass(o) or inspect.isroutine(o))
            and str(getattr(o, '__module__', '') or '').startswith(lib)}

def check(site=None, nbs=None, lib='optlib'):
    "The CI checks of a built site; returns a list of problems (empty when all is well)"
    site, nbs = Path(site or ROOT/'_docs'), Path(nbs or ROOT/'nbs')
    problems = []
    pages = {f.relative_to(site).as_posix(): parse_page(f) for f in site.rglob('*.html')}
    if 'index.html' not in pages: problems.append('no home page index.html')
    for nb in chapters(nbs):
        if f'{page_stem(nb)}.html' not in pages: problems.append(f'{nb.name} has no page {page_stem(nb)}.html')
    for name, p in pages.items():
        for kind, urls in (('link', p.links), ('resource', p.resources)):
            for url in urls:
                u = urlsplit(url)
                if u.scheme in ('http', 'https') and kind == 'resource':
                    problems.append(f'{name}: loads {url} from the internet'); continue
                if u.scheme or url.startswith('//') or not (u.path or u.fragment): continue
                if u.path.startswith('/') and name != '404.html':
                    problems.append(f'{name}: {kind} {url} is absolute (breaks from file://)'); continue
                rel = unquote(u.path).lstrip('/') if u.path.startswith('/') else (Path(name).parent/unquote(u.path)).as_posix()
                target = rel if u.path else name
                target = os.path.normpath(target)
                if target.startswith('..'): problems.append(f'{name}: {kind} {url} leaves the site'); continue
                tp = site/target
                if tp.is_dir(): tp, target = tp/'index.html', f'{target}/index.html'.lstrip('./')
                if not tp.exists(): problems.append(f'{name}: broken {kind} {url}'); continue
                if kind == 'link' and u.fragment and target in pages and unquote(u.fragment) not in pages[target].ids:
                    problems.append(f'{name}: link {url}: no #{u.fragment} in {target}')
        for leak in leaks(p): problems.append(f'{name}: raw {leak}')
    if (Path(nbs)/'sidebar.yml').exists() and (Path(nbs)/'sidebar.yml').read_text() != sidebar_yml(nbs):
        problems.append(f'{nbs}/sidebar.yml lists other notebooks than {nbs}: run `python tools/docs.py --sidebar`')
    if Path(nbs).resolve() == (ROOT/'nbs').resolve() and ((ROOT/lib/'all.py').exists() or (ROOT/lib/'_modidx.py').exists()):
        anchors = set().union(*(p.ids for p in pages.values())) if pages else set()
        try: names = api_names(lib)
        except Exception as e: problems.append(f'cannot import the API of {lib}: {e!r}'); names = {}
        for n, o in sorted(names.items()):
            if not ({anchor(n), anchor(getattr(o, '__qualname__', n))} & anchors):
                problems.append(f'{lib}.{n} ({o.__module__}) has no show_doc entry in the reference')
    return problems

# ---------------------------------------------------------------- command line

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--nbs', default=str(ROOT/'nbs'), help='folder of notebooks (default: nbs/)')
    ap.add_argument('--out', default=str(ROOT/'_docs'), help='output folder (default: _docs/)')
    ap.add_argument('--check', action='store_true', help='after building, run the CI checks on the site')
    ap.add_argument('--check-only', action='store_true', help='check the site in --out without building it')
    ap.add_argument('--sidebar', action='store_true', help='write nbs/sidebar.yml from the notebook list and stop')
    ap.add_argument('--force', action='store_true', help='ignore the caches under .cache/docs')
    ap.add_argument('--workers', type=int, default=2, help='notebooks processed at once')
    ap.add_argument('--proc-worker', action='store_true', help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.proc_worker: _worker(); return 0
    if a.sidebar:
        print(write_sidebar(a.nbs)); return 0
    if not a.check_only: build(a.nbs, a.out, workers=a.workers, force=a.force)
    if a.check or a.check_only:
        problems = check(a.out, a.nbs)
        for p in problems: print('DOCS CHECK FAILED:', p)
        print('docs checks:', 'ok' if not problems else f'{len(problems)} problem(s)')
        return 1 if problems else 0
    return 0

if __name__ == '__main__': sys.exit(main())
