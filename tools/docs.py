#!/usr/bin/env python
"""Build optlib's docs site offline into `_docs/`: `python tools/docs.py` (`--check` then checks it).

What `nbdev_docs` would build, without Quarto: nbdev's own docs processors run on each notebook of the sidebar
(`nbs/sidebar.yml`, from nbdev's `nbdev_sidebar`), in forks of a worker process, cached by content; only the cells
`show_doc` needs run, committed outputs are kept. Unlike nbdev: a `@patch` method with its own `show_doc` is shown
once, a cell that imports and does other work runs only its imports and definitions, and `show_doc` renders an API
entry whose heading id is nbdev's link anchor, with `class X(...)` for classes, defaults by name and lines that fit.
Material for MkDocs with mkdocs-jupyter renders the site (this file is also its hooks module: unique heading ids,
the table of contents, links for "chapter NN", a 404 page that works from disk); MathJax and the search shim are
served from the site (fetched once from npm), so it works from disk and from `python -m http.server`. A page of
every optimizer is generated from `optlib.registry.optimizer_table()` (skipped while that is missing).
"""
import argparse, collections, hashlib, html, json, os, re, runpy, shutil, subprocess, sys, tarfile, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT/'.cache'/'docs'
NPM_ASSETS = {  # npm package -> {file in the package: path under the site's assets/}
    'mathjax@3.2.2': {'es5/tex-svg-full.js': 'mathjax/tex-svg-full.js', 'LICENSE': 'mathjax/LICENSE'},
    'iframe-worker@1.0.4': {'shim/index.js': 'iframe-worker/shim.js', 'LICENSE': 'iframe-worker/LICENSE'},
}
SITE_MARK = '.optlib-docs'  # marks an output folder as ours, so a rebuild may empty it
TOC_DEPTH = 3               # headings listed in a page's table of contents (Quarto's default)
SIG_WIDTH = 68              # characters of a signature line: what the content column shows at 1280 px
OPT_PAGE = 'optimizers'     # the page generated from the optimizer registry

def log(*a): print('docs:', *a, file=sys.stderr, flush=True)

# ---------------------------------------------------------------- notebooks, pages, sidebar

def page_stem(nb):
    "The page nbdev gives notebook `nb` (its doc links point there): `08_learner.ipynb` -> `learner`"
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', Path(nb).stem.lower())

def chapter_pages(nbs):
    "{chapter number: page}, from the notebooks' names: `09b_stateful.ipynb` gives {'09b': 'stateful.html'}"
    return {m.group(1).lower(): f'{page_stem(p)}.html' for p in Path(nbs).glob('*.ipynb')
            if (m := re.match(r'(\d+[a-z]?)_', p.name, re.I))}

def sidebar_yml(nbs):
    "Quarto's sidebar for the notebooks in `nbs`, as nbdev's `nbdev_sidebar` writes it"
    import contextlib, io
    from nbdev.quarto import nbdev_sidebar
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): nbdev_sidebar.__wrapped__(path=str(nbs), printit=True, force=True)
    return buf.getvalue().rstrip('\n') + '\n'

def sidebar_notebooks(nbs):
    "The notebooks the sidebar lists, in its order"
    import yaml
    def flat(items): return [x for i in items for x in ([i] if isinstance(i, str) else flat(i.get('contents', [])))]
    return [Path(nbs)/f for f in flat(yaml.safe_load(sidebar_yml(nbs))['website']['sidebar']['contents'])
            if f.endswith('.ipynb')]

def find_config(nbs):
    "nbdev's config for notebooks in `nbs`: the nearest settings.ini above them, else this repository's"
    from nbdev.config import get_config
    d = next((d for d in [Path(nbs).resolve(), *Path(nbs).resolve().parents] if (d/'settings.ini').exists()), ROOT)
    old = os.getcwd()
    os.chdir(d)  # nbdev looks for settings.ini from the working directory
    try: return get_config(path=d)
    finally: os.chdir(old)

# ---------------------------------------------------------------- step 1: nbdev's processors, one process a notebook

def _default(o):
    "A default as a signature shows it: by name where it has one (also inside tuples and lists), no memory address"
    if hasattr(o, '__name__'): return o.__name__
    if type(o) in (tuple, list):
        s = ', '.join(map(_default, o)) + (',' if type(o) is tuple and len(o) == 1 else '')
        return f'({s})' if type(o) is tuple else f'[{s}]'
    return re.sub(r' at 0x[0-9a-fA-F]+', '', repr(o))

def _imports_and_defs(src):
    "The imports and definitions of a cell (all of it if it has nothing else, or does not parse)"
    import ast
    try: body = ast.parse(src).body
    except SyntaxError: return src
    keep = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))]
    lines = src.splitlines()
    return '\n'.join('\n'.join(lines[min([n.lineno] + [d.lineno for d in getattr(n, 'decorator_list', [])]) - 1:
                                     n.end_lineno]) for n in keep) if len(keep) < len(body) else src

def directives(source):
    "The `#| key: value` lines of a code cell as a dict, and the source without them"
    d = {m.group(1): m.group(2).strip('"\'') for m in re.finditer(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$', source, re.M)}
    return d, re.sub(r'^\s*#\|.*(\n|$)', '', source, flags=re.M).strip('\n')

def _relative(md, cfg):
    "Markdown with Quarto's link attributes dropped and links to this site's pages relative"
    host, base = cfg.get('doc_host', '').rstrip('/'), cfg.get('doc_baseurl', '').strip('/')
    md = re.sub(r'(\]\([^)\s]*\))\{[^}\n]*\}', r'\1', md)
    return md.replace(f'{host}/{base}/' if base else f'{host}/', '') if host else md

def _nb(cells, **meta):
    return {'cells': cells, 'nbformat': 4, 'nbformat_minor': 4, 'metadata': {'language_info': {'name': 'python'},
            'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'}, **meta}}

def _proc(src, dst):
    "nbdev's docs processors on notebook `src`, written to `dst` as mkdocs-jupyter takes it"
    import inspect, fastcore.docments as D, nbdev.processors as P, nbdev.showdoc as S
    from execnb.nbio import read_nb
    from nbdev.config import get_config
    sys.path.insert(0, os.getcwd())
    cfg = get_config()
    _def_names = P._def_names  # compares only a @patch method's bare name with the names shown: it would be shown twice
    P._def_names = lambda cell, shown: [n for n in _def_names(cell, shown) if n not in shown]
    D._fmt_default = _default

    class ApiEntry(S.BasicMarkdownRenderer):
        "nbdev's `show_doc` markdown, with the site's heading and a signature that fits the page"
        def __init__(self, sym, name=None, title_level=3): super().__init__(sym, name, title_level, maxline=SIG_WIDTH - 7)
        def _repr_markdown_(self):
            sig, src, h, a = str(self.dm), S.NbdevLookup().code(self.fn), self.title_level, html.escape(self.nm.lower())
            if inspect.isclass(self.sym): sig = re.sub(r'^def ', 'class ', sig)  # nbdev writes `def` for any callable
            md = f'<h{h} class="nbdev-anchor" id="{a}">{html.escape(self.nm)}<a class="headerlink" href="#{a}">¶</a></h{h}>\n\n'
            if src: md += f'<div class="nbdev-source" data-search-exclude><a href="{html.escape(src)}">source</a></div>\n\n'
            return md + f'```python\n{sig}\n```' + (f'\n\n{D._ital_first(self.docs)}' if self.docs else '')
    S.BasicMarkdownRenderer = ApiEntry

    class exec_show_docs(P.exec_show_docs):
        "nbdev's, except that a cell that imports and also does other work runs only its imports and definitions"
        def __call__(self, cell):
            if not (P._do_eval(cell) and getattr(self.nb, 'has_docs_', False) and hasattr(self, 'k')
                    and not P._show_docs(cell.parsed_()) and not {'export', 'exports', 'exporti'} & cell.directives_.keys()):
                return super().__call__(cell)
            self.k.run(_imports_and_defs(cell.source))
            if self.k.exc: raise RuntimeError(f'{src}: cell {cell.idx_} failed:\n{cell.source}') from self.k.exc

    class Procs(P.FilterDefaults):
        def base_procs(self):
            return [exec_show_docs if p is P.exec_show_docs else p for p in super().base_procs()
                    if p not in (P.insert_warning, P.add_fold, P.mv_exports)]  # Quarto-only presentation
    nb = read_nb(src)
    Procs()(nb)
    fm = getattr(nb, 'frontmatter_', {}) or {}
    cells = [{'cell_type': 'markdown', 'metadata': {}, 'source': f"# {fm.get('title') or Path(src).stem}\n" +
              (f"\n> {_relative(str(fm['description']), cfg)}\n" if fm.get('description') else '')}]
    shown = set()
    for c in nb.cells:
        if c.cell_type == 'markdown': cells.append({'cell_type': 'markdown', 'metadata': {}, 'source': _relative(c.source, cfg)})
        if c.cell_type != 'code': continue
        d, code = directives(c.source)
        outs = [] if d.get('output') == 'false' or d.get('include') == 'false' else c.get('outputs', [])
        for o in outs:
            data = o.get('data', {})
            if 'text/markdown' in data:
                data['text/markdown'] = _relative(''.join(data['text/markdown']), cfg)
                if d.get('output') == 'asis': data.pop('text/plain', None)
        ids = re.findall(r'class="nbdev-anchor" id="([^"]+)"', ''.join(o.get('data', {}).get('text/markdown', '') for o in outs))
        if ids and set(ids) <= shown:
            log(f'{Path(src).name}: `{code}` documents {", ".join(ids)} a second time; left out'); continue
        shown.update(ids)
        hide = d.get('echo') == 'false' or not code.strip()
        if hide and not outs or d.get('include') == 'false': continue
        cells.append({'cell_type': 'code', 'metadata': {'tags': ['remove_input']} if hide else {}, 'source': code,
                      'outputs': outs, 'execution_count': c.get('execution_count')})
    Path(dst + '.tmp').write_text(json.dumps(_nb(cells, title=str(fm.get('title') or ''))))
    os.replace(dst + '.tmp', dst)

PRELOAD = ('nbdev.processors', 'execnb.shell', 'matplotlib.pyplot', 'torch')  # imported once, not per notebook

def _serve():
    "`--proc-server`: import what notebooks need once, then process each notebook named on stdin in a fork of itself"
    import importlib
    for m in PRELOAD:
        try: importlib.import_module(m)
        except ImportError: pass
    from nbdev.doclinks import NbdevLookup
    NbdevLookup()  # nbdev's table of every project's names (cached)
    for line in sys.stdin:
        src, dst = json.loads(line)
        if not (pid := os.fork()):
            fd = os.open(dst + '.log', os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1); os.dup2(fd, 2)
            try: _proc(src, dst); code = 0
            except BaseException:
                import traceback; traceback.print_exc(); code = 1
            sys.stdout.flush(); sys.stderr.flush(); os._exit(code)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)

def process(nbs, cfg, cache, workers=2, force=False):
    "Processed copies of notebooks `nbs` (cached by content), as {notebook: processed file}"
    cache.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256(Path(__file__).read_bytes())
    for f in [Path(cfg.config_file), Path(cfg.lib_path)/'_modidx.py']:
        if f.exists(): h.update(f.read_bytes())
    out = {nb: cache/f'{nb.stem}.{hashlib.sha256(h.digest() + nb.read_bytes()).hexdigest()[:16]}.ipynb' for nb in nbs}
    todo = [(nb, dst) for nb, dst in out.items() if force or not dst.exists()]
    def drive(jobs):  # one server process per worker
        p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), '--proc-server'], cwd=cfg.config_path,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, 'MPLBACKEND': 'Agg'})
        failed = []
        for nb, dst in jobs:
            t = time.time()
            p.stdin.write(json.dumps([str(nb), str(dst)]) + '\n'); p.stdin.flush()
            rc, f = int(p.stdout.readline() or 1), Path(f'{dst}.log')
            text = f.read_text() if f.exists() else 'the worker process died'
            f.unlink(missing_ok=True)
            log(f'  {nb.name} {time.time()-t:.1f}s' + (' FAILED' if rc else ''))
            if rc: failed.append(text[-4000:])
            else: print(*[l for l in text.splitlines() if l.startswith('docs:')], sep='\n', file=sys.stderr, end='')
        p.stdin.close(); p.wait()
        return failed
    if todo: log(f'processing {len(todo)} notebook(s) with nbdev ({len(out)-len(todo)} cached)')
    with ThreadPoolExecutor(max(1, workers)) as ex:
        failed = sum(ex.map(drive, [j for i in range(max(1, workers)) if (j := todo[i::max(1, workers)])]), [])
    if failed: raise SystemExit('docs: nbdev could not process a notebook (a cell that imports and also uses names '
                                'from cells nbdev does not run? see nbdev FAQ "imports and other code"):\n' + '\n'.join(failed))
    for f in cache.glob('*.ipynb'):
        if f not in out.values(): f.unlink()
    return out

# ---------------------------------------------------------------- step 3: the optimizer table

def registry_table():
    "`optlib.registry.optimizer_table()`, or None (with a note) while the registry does not exist"
    sys.path.insert(0, str(ROOT))
    try:
        import optlib.all                        # every chapter registers its optimizers when imported
        from optlib.registry import optimizer_table
    except ModuleNotFoundError as e:
        if e.name not in ('optlib.registry', 'optlib'): raise
        log(f'no optimizer table page: {e.name} is missing'); return None
    finally: sys.path.remove(str(ROOT))
    return optimizer_table()

OPT_COLUMNS = {'name': 'Optimizer', 'update': 'Update rule', 'paper': 'Paper', 'constructor': 'Constructor',
               'reference': 'Tested against', 'state': 'State per parameter'}

def modidx_links(f):
    "nbdev's index `f` (`_modidx.py`) as {qualified name: 'page.html#anchor'}; empty if it does not exist yet"
    return {k: v[0] for m in runpy.run_path(str(f))['d']['syms'].values() for k, v in m.items()} if Path(f).exists() else {}

def optimizer_page(rows, chapters):
    "A notebook of one table: every optimizer of `rows` (`optimizer_table()`), each name linking to its API entry"
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    def cell(md): return re.sub(r'^<p>(.*)</p>\s*$', r'\1', markdown2html_mistune(str(md or '')).strip(), flags=re.S)
    def code(t): return f'`{t}`' if t and re.fullmatch(r'[\w.]+\.[\w.]+(\(.*\))?', str(t)) else t  # `torch.optim.SGD`
    body, syms = [], modidx_links(ROOT/'optlib'/'_modidx.py')
    for r in rows:
        ctor = re.sub(r' at 0x[0-9a-fA-F]+', '', str(r.get('constructor') or r['name']))
        page = chapters.get(str(r.get('chapter', '')).split('_')[0].lower(), f"{page_stem(r.get('chapter', ''))}.html")
        entry = re.match(r'[\w.]+', ctor).group(0).lower()
        href = syms.get(r.get('api')) or f'{page}#{entry}'  # the factory's API entry (from nbdev's index)
        tds = [f'<a href="{href}">{html.escape(r["name"])}</a>',
               cell(r.get('update')), cell(r.get('paper')), cell(f'`{ctor}`'), cell(code(r.get('reference'))), cell(r.get('state'))]
        body.append('<tr>' + ''.join(f'<td>{t}</td>' for t in tds) + '</tr>')
    table = ('<div class="optimizer-table"><table>\n<thead><tr>' + ''.join(f'<th>{t}</th>' for t in OPT_COLUMNS.values())
             + '</tr></thead>\n<tbody>\n' + '\n'.join(body) + '\n</tbody>\n</table></div>')
    md = ('# Every optimizer\n\n> One row per optimizer of `optlib.registry`: its update rule, paper, constructor, '
          'what its tests check it against, and the state it keeps per parameter.\n\n'
          'Each name links to its reference entry; the table is generated from the registry at every docs build.\n\n' + table)
    return _nb([{'cell_type': 'markdown', 'metadata': {}, 'source': md}])

# ---------------------------------------------------------------- step 2: the site

def build(nbs=None, out=None, workers=2, force=False, table=registry_table):
    "Build the site from the notebooks in `nbs` into `out`; `table` gives the optimizer rows (or None); returns `out`"
    t0 = time.time()
    nbs, out = Path(nbs or ROOT/'nbs').resolve(), Path(out or ROOT/'_docs').resolve()
    cfg, sb = find_config(nbs), nbs/'sidebar.yml'
    if nbs == (ROOT/'nbs').resolve() and (not sb.exists() or sb.read_text() != sidebar_yml(nbs)):
        sb.write_text(sidebar_yml(nbs)); log(f'updated {sb} (Quarto\'s sidebar, from nbdev_sidebar)')
    if out.exists() and any(out.iterdir()) and not (out/SITE_MARK).exists():
        raise SystemExit(f'docs: {out} is not empty and was not built by this script; not overwriting it')
    nbl, chapters = sidebar_notebooks(nbs), chapter_pages(nbs)
    stems = collections.Counter([page_stem(nb) for nb in nbl] + [OPT_PAGE])
    if max(stems.values()) > 1: raise SystemExit(f'docs: two pages would be named {stems.most_common(1)[0][0]}.html')
    cache = CACHE/hashlib.sha256(str(nbs).encode()).hexdigest()[:12]
    procd = process(nbl, cfg, cache/'proc', workers=workers, force=force)
    t1 = time.time()
    work = Path(tempfile.mkdtemp(prefix='site-', dir=cache))
    try:
        src, nav = work/'src', []
        (src/'assets').mkdir(parents=True)
        for nb, p in procd.items():
            shutil.copy(p, src/f'{page_stem(nb)}.ipynb')
            title = json.loads(p.read_text())['metadata']['title'] or nb.stem
            nav.append(('Home' if nb.name == 'index.ipynb' else title, f'{page_stem(nb)}.ipynb'))
        rows = table() if table else None
        if rows:
            (src/f'{OPT_PAGE}.ipynb').write_text(json.dumps(optimizer_page(rows, chapters)))
            nav.insert(1, ('Every optimizer', f'{OPT_PAGE}.ipynb'))
        npm_assets(src/'assets')
        (src/'assets'/'mathjax-loader.js').write_text(MATHJAX_LOADER)
        (src/'assets'/'optlib-docs.css').write_text(EXTRA_CSS)
        (work/'mkdocs.yml').write_text(mkdocs_yml(cfg, nav, src, out, cache, chapters))
        log(f'rendering {len(nav)} page(s) with mkdocs')
        r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--clean', '-q', '-f', str(work/'mkdocs.yml')],
                           cwd=work, capture_output=True, text=True, env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'})
        if r.returncode: raise SystemExit(f'docs: mkdocs failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}')
        for line in r.stderr.splitlines():
            if 'WARNING' in line or 'ERROR' in line: log('mkdocs:', line)
    finally: shutil.rmtree(work, ignore_errors=True)
    (out/SITE_MARK).write_text('built by tools/docs.py\n')
    log(f'built {out} in {time.time()-t0:.1f}s (nbdev {t1-t0:.1f}s, site {time.time()-t1:.1f}s)')
    return out

def mkdocs_yml(cfg, nav, src, out, cache, chapters):
    import yaml
    git_url = cfg.get('git_url', '')
    return yaml.safe_dump({
        'site_name': cfg.get('title', cfg.get('lib_name')), 'site_description': cfg.get('description', ''),
        'docs_dir': str(src), 'site_dir': str(out), 'use_directory_urls': False, 'nav': [{t: f} for t, f in nav],
        'theme': {'name': 'material', 'font': False, 'language': 'en', 'palette': {'primary': 'indigo', 'accent': 'indigo'},
                  'features': ['navigation.footer', 'navigation.top', 'toc.follow', 'search.highlight', 'content.code.copy']},
        'plugins': [{'search': {}}, {'offline': {}},
                    {'mkdocs-jupyter': {'include': ['*.ipynb'], 'execute': False, 'no_prompt': True, 'ignore_h1_titles': True,
                                        'toc_depth': TOC_DEPTH, 'include_requirejs': False,
                                        'remove_tag_config': {'remove_input_tags': ['remove_input']},
                                        'custom_mathjax_url': 'assets/mathjax-loader.js',
                                        'cache': True, 'cache_dir': str(cache/'mkdocs-jupyter')}}],
        'extra': {'polyfills': ['assets/iframe-worker/shim.js'], 'generator': False, 'chapters': chapters,
                  'modidx': str(Path(cfg.lib_path)/'_modidx.py'),
                  'social': [{'icon': 'fontawesome/brands/github', 'link': git_url}] if git_url else []},
        'extra_css': ['assets/optlib-docs.css'], 'hooks': [str(Path(__file__).resolve())],
    }, sort_keys=False, allow_unicode=True)

# ---------------------------------------------------------------- MkDocs hooks (run inside `mkdocs build`)

_re_heading = re.compile(r'<h([1-6])\b([^>]*?)\bid="([^"]+)"([^>]*)>(.*?)</h\1>', re.S)
_re_chapter = re.compile(r'\b(chapters?\s+)(\d+[a-z]?\b(?:(?:,\s*|,?\s+(?:and|or|to)\s+)\d+[a-z]?\b)*)', re.I)
_NOLINK = {'a', 'code', 'pre', 'script', 'style', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'textarea', 'svg'}
_styles = {}  # the notebook CSS nbconvert inlines in every page, written once as assets/nb-<hash>.css

def on_config(config, **kw):
    "Skip mkdocs-jupyter's second conversion of each notebook (for a table of contents made below instead)"
    import mkdocs_jupyter.plugin as mj
    mj._get_nb_toc_tokens = lambda fpath, toc_depth: ([], None)
    _styles.clear()
    return config

def _unique_ids(text):
    "Headings get ids of their own: an API entry keeps nbdev's anchor, a heading that would share it gets `-1`..."
    api = set(re.findall(r'class="nbdev-anchor" id="([^"]+)"', text))
    seen = set()
    def fix(m):
        level, pre, hid, post, inner = m.groups()
        if 'nbdev-anchor' not in pre + post:
            new, n = hid, 0
            while new in api or new in seen: n += 1; new = f'{hid}-{n}'
            inner = re.sub(r'<a class="anchor-link" href="#[^"]*">', f'<a class="headerlink" href="#{new}">', inner)
            hid = new
        seen.add(hid)
        return f'<h{level}{pre}id="{hid}"{post}>{inner}</h{level}>'
    return _re_heading.sub(fix, text)

def link_chapters(text, chapters, prefix=''):
    "Prose mentions of 'chapter 09b' (or 'chapters 13 and 14') that are not links yet -> links to those pages"
    def link(m):
        nums = re.sub(r'\d+[a-z]?\b', lambda n: f'<a href="{prefix}{chapters[n.group(0).lower()]}">{n.group(0)}</a>'
                      if n.group(0).lower() in chapters else n.group(0), m.group(2))
        return m.group(1) + nums
    out, stack = [], []
    for part in re.split(r'(<[^>]*>)', text):
        tag = re.match(r'<(/?)([a-zA-Z][\w-]*)', part)
        if tag and tag.group(2).lower() in _NOLINK and not part.endswith('/>'):
            if not tag.group(1): stack.append(tag.group(2).lower())
            elif tag.group(2).lower() in stack: del stack[len(stack) - 1 - stack[::-1].index(tag.group(2).lower()):]
        elif not tag and not part.startswith('<') and not stack: part = _re_chapter.sub(link, part)
        out.append(part)
    return ''.join(out)

def on_page_content(html_text, page, config, files, **kw):
    "Unique heading ids, the table of contents from them, chapter links, copy buttons out of search, shared CSS"
    from mkdocs.structure.toc import get_toc
    if not page.file.src_path.endswith('.ipynb'): return html_text
    prefix = '../' * page.file.dest_uri.count('/')
    html_text = link_chapters(_unique_ids(html_text), config['extra'].get('chapters', {}), prefix)
    tokens, stack = [], []
    for m in _re_heading.finditer(html_text):
        level = int(m.group(1))
        if level > TOC_DEPTH: continue
        name = html.unescape(re.sub(r'<[^>]+>', '', m.group(5))).replace('\u00b6', '').strip()
        tok = {'level': level, 'id': html.unescape(m.group(3)), 'name': html.escape(name), 'children': []}
        while stack and stack[-1]['level'] >= level: stack.pop()
        (stack[-1]['children'] if stack else tokens).append(tok)
        stack.append(tok)
    page.toc = get_toc(tokens)
    if sum(1 + len(t['children']) for t in tokens) <= 1: page.meta['hide'] = ['toc']  # give a lone table the room
    html_text = html_text.replace('<clipboard-copy ', '<clipboard-copy data-search-exclude ')
    def shared(m):
        if len(m.group(1)) < 2000: return m.group(0)
        h = hashlib.sha256(m.group(1).encode()).hexdigest()[:10]
        _styles[h] = m.group(1)
        return f'<link rel="stylesheet" href="{prefix}assets/nb-{h}.css">'
    return re.sub(r'<style[^>]*>(.*?)</style>', shared, html_text, flags=re.S)

def on_post_build(config, **kw):
    "Write the shared CSS; links to a name without an entry of its own go to its class's entry, or the page; 404 from disk"
    site = Path(config['site_dir'])
    for h, css in _styles.items(): (site/'assets'/f'nb-{h}.css').write_text(css, encoding='utf-8')
    pages = {f.name: f.read_text(encoding='utf-8') for f in site.glob('*.html')}
    ids = {p: set(re.findall(r'\sid="([^"]+)"', t)) for p, t in pages.items()}
    syms = set(modidx_links(Path(config['extra']['modidx'])).values())
    def fix(m):
        page, frag = m.group(1), html.unescape(m.group(2))
        if page not in ids or frag in ids[page] or f'{page}#{frag}' not in syms: return m.group(0)
        parts = frag.split('.')
        while len(parts) > 1 and '.'.join(parts) not in ids[page]: parts.pop()
        return f'href="{page}' + (f'#{parts[0]}"' if parts[0] in ids[page] else '"')
    for p, t in pages.items():
        new = re.sub(r'href="([\w.-]+\.html)#([^"]+)"', fix, t)
        if p == '404.html': new = re.sub(r'(href|src)="/(?!/)', r'\1="', new)  # mkdocs writes it for a server's root
        if new != t: (site/p).write_text(new, encoding='utf-8')

# ---------------------------------------------------------------- static assets

def npm_assets(dest, cache=CACHE/'npm'):
    "Copy MathJax and iframe-worker into `dest`, fetching the pinned packages from the npm registry once"
    cache.mkdir(parents=True, exist_ok=True)
    for spec, files in NPM_ASSETS.items():
        tgz = cache/f"{spec.replace('@', '-')}.tgz"
        if not tgz.exists():
            if not shutil.which('npm'): raise SystemExit(f'docs: npm is needed once to fetch {spec} (into {cache})')
            log(f'fetching {spec} from the npm registry')
            with tempfile.TemporaryDirectory() as td:
                r = subprocess.run(['npm', 'pack', spec, '--silent', '--pack-destination', td], capture_output=True, text=True)
                got = list(Path(td).glob('*.tgz'))
                if r.returncode or not got: raise SystemExit(f'docs: `npm pack {spec}` failed:\n{r.stderr[-2000:]}')
                shutil.move(str(got[0]), tgz)
        with tarfile.open(tgz) as tf:
            for member, to in files.items():
                (dest/to).parent.mkdir(parents=True, exist_ok=True)
                (dest/to).write_bytes(tf.extractfile(f'package/{member}').read())

MATHJAX_LOADER = r"""// MathJax 3 (SVG output: no web fonts to load, so it works from file:// too), served from this site
(function () {
  if (window.MathJax && window.MathJax.startup) return;   // every notebook block on a page includes this file
  var here = document.currentScript && document.currentScript.src;
  window.MathJax = {
    tex: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']],
          processEscapes: true, processEnvironments: true, tags: 'ams'},
    svg: {fontCache: 'global'},
    options: {ignoreHtmlClass: 'tex2jax_ignore', processHtmlClass: 'tex2jax_process'},
    startup: {typeset: true, elements: ['.md-content'],
      pageReady: function () {   // typesetting changes the height of what is above an entry: land on it again
        return MathJax.startup.defaultPageReady().then(function () {
          var id = decodeURIComponent(location.hash.slice(1)), el = id && document.getElementById(id);
          if (el) el.scrollIntoView();
        });
      }}
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
.md-typeset .nbdev-anchor { border-top: .05rem solid var(--md-default-fg-color--lightest); padding-top: 1em; margin-top: 2em; }
.md-typeset .jupyter-wrapper div.nbdev-source { text-align: right; font-size: .8em; margin: -3.2em 0 1.6em; }
/* signatures: lines end at argument boundaries (nbdev wraps them to fit); never break inside a name */
.md-typeset .jupyter-wrapper .jp-RenderedMarkdown pre { white-space: pre; word-break: normal; overflow-wrap: normal; overflow-x: auto; }
.md-typeset div.optimizer-table { overflow-x: auto; }
.md-typeset div.optimizer-table table { display: table; width: 100%; min-width: 36rem; font-size: .64rem; border-collapse: collapse; }
.md-typeset div.optimizer-table :is(th, td) { padding: .5em .6em; vertical-align: top; text-align: left; border-top: .05rem solid var(--md-typeset-table-color); }
.md-typeset div.optimizer-table code { white-space: normal; word-break: normal; }
.md-typeset div.optimizer-table mjx-container svg { max-width: none; }
@media screen and (max-width: 44.9375em) {
  .md-typeset .jupyter-wrapper .jp-InputArea-editor, .md-typeset .jupyter-wrapper pre { font-size: .72rem; }
}
"""

# ---------------------------------------------------------------- --check

_HEADINGS = {'h1', 'h2', 'h3', 'h4', 'h5', 'h6'}
_RAW, _CODE = {'script', 'style', 'template', 'noscript', 'svg', 'textarea'}, {'pre', 'code'}
_BLOCK = _HEADINGS | set('address article aside blockquote body br dd details div dl dt figcaption figure footer form '
                         'header hr li main nav ol p section summary table tbody td tfoot th thead tr ul'.split())
_VOID = set('area base br col embed hr img input link meta param source track wbr'.split())

class _Page(HTMLParser):
    "What `--check` reads of a page: ids, headings, API entries (and their signatures), links, resources, text"
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.first = collections.Counter(), {}  # id -> count; id -> is its first element an API entry
        self.links, self.resources, self.headings, self.api = [], [], [], []
        self.stack, self.prose, self.code, self.plain, self.cur = [], [], [], [], []
        self._api = self._h = None  # the API entry whose signature is still to come; the heading being read
        self._mark = False          # an `nbdev-anchor` element came before its heading (as nbdev's Quarto output has it)
    def _flush(self):
        if self.cur: self.prose.append(''.join(self.cur)); self.cur = []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs); api = 'nbdev-anchor' in (a.get('class') or '').split()
        for i in [a.get('id')] + ([a.get('name')] if tag == 'a' else []):
            if i: self.ids[i] += 1; self.first.setdefault(i, api)
        if api and tag not in _HEADINGS: self._mark = True
        if tag in _HEADINGS:
            api, self._mark = api or self._mark, False
            self._h = {'id': a.get('id'), 'text': '', 'api': api, 'sig': None}
            self.headings.append(self._h)
            self._api = self._h if api else None
            if api: self.api.append(self._h)
        if tag == 'pre' and self._api: self._api['sig'] = ''
        if tag == 'a' and a.get('href') is not None: self.links.append(a['href'])
        if tag in ('script', 'img', 'iframe', 'source') and a.get('src'): self.resources.append(a['src'])
        if tag == 'link' and a.get('href') and 'stylesheet' in (a.get('rel') or ''): self.resources.append(a['href'])
        if tag in _BLOCK: self._flush()
        if tag not in _VOID: self.stack.append(tag)
    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self.stack and self.stack[-1] == tag: self.stack.pop()
    def handle_endtag(self, tag):
        if tag in _HEADINGS and self._h: self._h['name'] = self._h['text'].replace('¶', '').strip(); self._h = None
        if tag == 'pre': self._api = None
        if tag in _BLOCK: self._flush()
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag: pass
    def handle_data(self, data):
        st = set(self.stack)
        if self._h is not None: self._h['text'] += data
        if self._api and self._api['sig'] is not None: self._api['sig'] += data
        if st & _RAW: return
        if st & _CODE: self.code.append(data)
        else: self.cur.append(data)
        if not st & _NOLINK: self.plain.append(data)
    def close(self):
        super().close(); self._flush()

def parse_page(f):
    p = _Page(); p.feed(Path(f).read_text(encoding='utf-8')); p.close()
    return p

_re_math = re.compile(r'\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)|(?<![\\$])\$(?!\$)(?:\\\$|[^$])+?(?<!\\)\$', re.S)
_re_leak = re.compile(r'\$\$|\\\(|#\||^\s*:::|\{target=|\\(?:frac|sum|theta|alpha|beta|eta|lambda|nabla|left|right|mathbf|mathrm|sqrt|cdot)\b', re.M)

def leaks(page):
    "Quarto/notebook syntax a reader would see: `$$`, `\\(` outside what MathJax typesets, `#|`, `:::`, `{target=`"
    found = [f'{m.group(0)!r} in {t.strip()[:80]!r}' for t in page.prose for m in _re_leak.finditer(_re_math.sub(' ', t))]
    return found + [f'{m.group(0)!r} in code {t.strip()[:80]!r}' for t in page.code for m in re.finditer(r'^\s*#\|', t, re.M)]

def api_names(lib='optlib'):
    "The public classes and functions of `{lib}.all`, as {name: object}"
    import importlib, inspect
    sys.path.insert(0, str(ROOT))
    try: ns = vars(importlib.import_module(f'{lib}.all'))
    finally: sys.path.remove(str(ROOT))
    return {n: o for n, o in ns.items() if not n.startswith('_') and (inspect.isclass(o) or inspect.isroutine(o))
            and str(getattr(o, '__module__', '') or '').startswith(lib)}

def _resolve(name, names):
    "The object an API entry named `Learner.fit` documents, if `names` has it"
    o = names.get(name.split('.')[0])
    for part in name.split('.')[1:]: o = getattr(o, part, None)
    return o

def check_api(name, p, names):
    "Problems of the API entries of page `p`: shared anchors, entries shown twice, unstable or misleading signatures"
    import inspect
    problems, seen = [], collections.Counter(e['name'] for e in p.api)
    problems += [f'{name}: API entry {n} appears {k} times' for n, k in seen.items() if k > 1]
    for e in p.api:
        shared = [h['name'] for h in p.headings if h['id'] == e['id'] and not h['api']]
        if shared: problems.append(f'{name}: API entry {e["name"]} shares its anchor #{e["id"]} with the heading "{shared[0]}"')
        sig = (e['sig'] or '').rstrip('\n')
        if re.search(r' at 0x[0-9a-fA-F]+', sig): problems.append(f'{name}: signature of {e["name"]} shows a memory address')
        if inspect.isclass(_resolve(e['name'] or '', names)) and not sig.startswith('class '):
            problems.append(f'{name}: class {e["name"]} is shown as {sig.split("(")[0]!r}')
        for line in sig.split('\n') if sig else []:
            if len(line) > SIG_WIDTH: problems.append(f'{name}: signature line of {e["name"]} is {len(line)} > {SIG_WIDTH} characters')
    return problems

def check_search(site):
    "Problems of the search index: a location listed twice (Material then marks it up twice), titles with markup"
    docs = json.loads((Path(site)/'search'/'search_index.json').read_text())['docs']
    locs = collections.Counter(d['location'] for d in docs)
    problems = [f'search: {l} is in the index {n} times' for l, n in locs.items() if n > 1]
    problems += [f'search: title {d["title"]!r} of {d["location"]} is not clean text' for d in docs
                 if re.search(r'[<>¶]', re.sub(r'</?code>', '', d['title']))]
    problems += [f'search: text of {d["location"]} has the copy button\'s "Copied!"' for d in docs if 'Copied!' in d['text']]
    return problems

def check(site=None, nbs=None, lib='optlib', table=registry_table):
    "The CI checks of a built site; returns a list of problems (empty when all is well)"
    site, nbs = Path(site or ROOT/'_docs'), Path(nbs or ROOT/'nbs')
    problems, main = [], nbs.resolve() == (ROOT/'nbs').resolve()
    pages = {f.relative_to(site).as_posix(): parse_page(f) for f in site.rglob('*.html')}
    if 'index.html' not in pages: problems.append('no home page index.html')
    for nb in sidebar_notebooks(nbs):
        if f'{page_stem(nb)}.html' not in pages: problems.append(f'{nb.name} has no page {page_stem(nb)}.html')
    try: names = api_names(lib) if main else {}
    except Exception as e: problems.append(f'cannot import the API of {lib}: {e!r}'); names = {}
    chapters = chapter_pages(nbs)
    for name, p in pages.items():
        for kind, urls in (('link', p.links), ('resource', p.resources)):
            for url in urls:
                u = urlsplit(url)
                if u.scheme in ('http', 'https') and kind == 'resource':
                    problems.append(f'{name}: loads {url} from the internet'); continue
                if u.scheme or url.startswith('//') or not (u.path or u.fragment): continue
                if u.path.startswith('/'): problems.append(f'{name}: {kind} {url} is absolute (breaks from file://)'); continue
                target = os.path.normpath((Path(name).parent/unquote(u.path)).as_posix()) if u.path else name
                if target.startswith('..'): problems.append(f'{name}: {kind} {url} leaves the site'); continue
                if (site/target).is_dir(): target = f'{target}/index.html'.lstrip('./')
                if not (site/target).exists(): problems.append(f'{name}: broken {kind} {url}'); continue
                frag, tp = unquote(u.fragment), pages.get(target)
                if kind == 'link' and frag and tp and frag not in tp.ids: problems.append(f'{name}: link {url}: no #{frag} in {target}')
                elif kind == 'link' and frag and tp and any(e['id'] == frag for e in tp.api) and not tp.first[frag]:
                    problems.append(f'{name}: link {url} lands on a heading above the API entry #{frag}')
        problems += [f'{name}: raw {leak}' for leak in leaks(p)]
        problems += [f'{name}: id #{i} is used {n} times' for i, n in p.ids.items() if n > 1]
        problems += check_api(name, p, names)
        for t in p.plain:
            problems += [f'{name}: "{m.group(0)}" is not a link to its chapter' for m in _re_chapter.finditer(t)
                         if any(n.lower() in chapters for n in re.findall(r'\d+[a-z]?\b', m.group(2)))]
    if '404.html' in pages and not any(r.endswith('.css') and (site/r).exists() for r in pages['404.html'].resources):
        problems.append('404.html: no stylesheet that loads from disk')
    problems += check_search(site)
    if main and (not (nbs/'sidebar.yml').exists() or (nbs/'sidebar.yml').read_text() != sidebar_yml(nbs)):
        problems.append(f'{nbs}/sidebar.yml is not what nbdev_sidebar writes: run `python tools/docs.py`')
    if main:
        anchors = set().union(*(p.ids for p in pages.values()))
        problems += [f'{lib}.{n} ({o.__module__}) has no show_doc entry in the reference' for n, o in sorted(names.items())
                     if not {n.lower(), getattr(o, '__qualname__', n).lower()} & anchors]
        rows, f = table() if table else None, site/f'{OPT_PAGE}.html'
        if rows is not None and len(re.findall(r'<tr>\s*<td>', f.read_text() if f.exists() else '')) != len(rows):
            problems.append(f'{OPT_PAGE}.html does not list the {len(rows)} optimizers of the registry')
    return problems

# ---------------------------------------------------------------- command line

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--nbs', default=str(ROOT/'nbs'), help='folder of notebooks (default: nbs/)')
    ap.add_argument('--out', default=str(ROOT/'_docs'), help='output folder (default: _docs/)')
    ap.add_argument('--check', action='store_true', help='after building, run the CI checks on the site')
    ap.add_argument('--check-only', action='store_true', help='check the site in --out without building it')
    ap.add_argument('--force', action='store_true', help='ignore the caches under .cache/docs')
    ap.add_argument('--workers', type=int, default=2, help='notebooks processed at once')
    ap.add_argument('--proc-server', action='store_true', help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.proc_server: _serve(); return 0
    if not a.check_only: build(a.nbs, a.out, workers=a.workers, force=a.force)
    if a.check or a.check_only:
        problems = check(a.out, a.nbs)
        for p in problems: print('DOCS CHECK FAILED:', p)
        print('docs checks:', 'ok' if not problems else f'{len(problems)} problem(s)')
        return 1 if problems else 0
    return 0

if __name__ == '__main__': sys.exit(main())
