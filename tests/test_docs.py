"""The offline docs build (`python tools/docs.py`): build the site once from nbs/ and check it as a reader would need it.

Skips only when a docs dependency is missing (the mkdocs packages of settings.ini's dev requirements, or npm on a
machine that has not cached MathJax yet); the browser test also needs Chromium (`apt-get install -y chromium`).
"""
import importlib.util, json, re, shutil
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def _tool(name):
    spec = importlib.util.spec_from_file_location(f'optlib_tools_{name}', ROOT/'tools'/f'{name}.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

for _m in ('nbdev', 'mkdocs', 'material', 'mkdocs_jupyter'):
    pytest.importorskip(_m, reason=f'docs dependency {_m} is not installed (pip install -e ".[dev]")')

docs = _tool('docs')
_cached = all((docs.CACHE/'npm'/f"{s.replace('@', '-')}.tgz").exists() for s in docs.NPM_ASSETS)
if not _cached and not shutil.which('npm'):
    pytest.skip('docs dependency npm is missing (needed once to fetch MathJax)', allow_module_level=True)

# Rows as `optlib.registry.optimizer_table()` gives them, used while the registry does not exist yet
FIXTURE_TABLE = [
    {'name': 'adamw', 'update': r'$w \leftarrow w - \text{lr}\,\hat m/(\sqrt{\hat v}+\epsilon) - \text{lr}\,\text{wd}\,w$',
     'paper': '[Loshchilov & Hutter, 2019](https://arxiv.org/abs/1711.05101)', 'reference': 'torch.optim.AdamW',
     'constructor': 'Adam(params, lr, mom=0.9, sqr_mom=0.99, eps=1e-05, wd=0.01, decouple_wd=True)',
     'state': '2 tensors + step', 'chapter': '09b_stateful'},
    {'name': 'sgd', 'update': r'$w \leftarrow w - \text{lr}\, g$', 'paper': 'Robbins & Monro, 1951', 'reference': 'formula',
     'constructor': 'SGD(params, lr, mom=0.0, wd=0.0, hook=<function f at 0x7f3a2b1c>)', 'state': 'none',
     'chapter': '09b_stateful'},
]

@pytest.fixture(scope='module')
def table():
    return docs.registry_table() or FIXTURE_TABLE

@pytest.fixture(scope='module')
def site(tmp_path_factory, table):
    return docs.build(ROOT/'nbs', tmp_path_factory.mktemp('site')/'_docs', table=lambda: table)

@pytest.fixture(scope='module')
def problems(site, table):
    return docs.check(site, ROOT/'nbs', table=lambda: table)

def _only(problems, *words):
    return [p for p in problems if any(w in p for w in words)]

def test_every_chapter_has_a_page(site, problems):
    assert (site/'index.html').exists()
    assert not _only(problems, 'has no page', 'no home page')
    for nb in docs.sidebar_notebooks(ROOT/'nbs'):
        assert (site/f'{docs.page_stem(nb)}.html').stat().st_size > 1000, nb.name

def test_api_reference_has_every_public_name(problems):
    assert docs.api_names('optlib'), 'optlib.all exports no public names'
    assert not _only(problems, 'show_doc entry', 'cannot import the API'), '\n'.join(problems)

def test_no_broken_internal_links(problems):
    assert not _only(problems, 'broken', ': no #', 'leaves the site', 'is absolute'), '\n'.join(problems)

def test_links_to_a_name_land_on_its_entry(problems):
    assert not _only(problems, 'lands on a heading', 'shares its anchor', 'is used'), '\n'.join(problems)

def test_api_entries_once_with_stable_signatures(problems):
    assert not _only(problems, 'API entry', 'memory address', 'is shown as', 'signature line'), '\n'.join(problems)

def test_chapter_mentions_are_links(problems):
    assert not _only(problems, 'is not a link to its chapter'), '\n'.join(problems)

def test_search_index_is_clean(problems, site):
    assert not _only(problems, 'search:'), '\n'.join(problems)
    index = json.loads((site/'search'/'search_index.json').read_text())['docs']
    adam = [d for d in index if d['location'] == 'stateful.html#adam']
    assert len(adam) == 1 and adam[0]['title'] == 'Adam' and adam[0]['text'].startswith('<pre>def Adam(')

def test_404_page_works_from_disk(problems, site):
    assert not _only(problems, '404.html'), '\n'.join(problems)
    assert 'href="assets/stylesheets/' in (site/'404.html').read_text()

def test_no_raw_syntax_in_pages(problems):
    assert not _only(problems, ': raw '), '\n'.join(problems)

def test_works_offline(site, problems):
    assert not _only(problems, 'from the internet'), '\n'.join(problems)
    assert (site/'assets'/'mathjax'/'tex-svg-full.js').stat().st_size > 100_000
    assert (site/'search'/'search_index.js').exists()  # search from file:// (offline plugin + iframe-worker)

def test_sidebar_yml_is_nbdevs(problems):
    assert not _only(problems, 'sidebar.yml'), '\n'.join(problems)

def test_optimizer_table_page(site, table, problems):
    "One row per registry entry, each name a working link to its API entry (checked above), and searchable"
    page = (site/f'{docs.OPT_PAGE}.html').read_text()
    assert page.count('<tr><td><a href=') == len(table) and not _only(problems, docs.OPT_PAGE)
    for r in table:
        assert re.search(rf'<a href="[\w.-]+\.html#[\w.-]+">{re.escape(r["name"])}</a>', page), r['name']   # a link to an entry (resolved above)
    index = json.loads((site/'search'/'search_index.json').read_text())['docs']
    text = ' '.join(d['text'] for d in index if d['location'].startswith(f'{docs.OPT_PAGE}.html'))
    assert all(r['name'] in text for r in table)
    assert 'Every optimizer' in (site/'index.html').read_text()  # in the navigation

def test_no_problems_at_all(problems):
    assert problems == [], '\n'.join(problems)

def test_in_browser(site):
    bc = _tool('browser_check')
    exe = bc.find_chromium()
    if not exe: pytest.skip('no Chromium for the browser check (apt-get install -y chromium)')
    pages = bc.pick_pages(site) + ['stateful.html', f'{docs.OPT_PAGE}.html']
    failed = bc.run(site, pages, ROOT/'_screenshots', exe)
    assert failed == 0, 'see the lines above and the screenshots in _screenshots/'

# ---------------------------------------------------------------- the checks catch what the issue found

BAD_PAGE = """<html><body><div class="md-content"><h1 id="learner">Learner</h1>
<p>See chapter 09 and <a href="#learner">Learner</a>.</p><p>{target="_blank"} #| echo: false</p>
<h3 class="nbdev-anchor" id="learner">Learner</h3><pre>def Learner(model, cb=&lt;function f at 0x7f3a2b&gt;, {long}):</pre>
<h3 class="nbdev-anchor" id="learner.fit">Learner.fit</h3><pre>def fit(n):</pre>
<h3 class="nbdev-anchor" id="learner.fit">Learner.fit</h3><pre>def fit(n):</pre>
</div></body></html>"""

def test_checks_catch_the_reported_problems(tmp_path):
    nbs, site = tmp_path/'nbs', tmp_path/'site'
    nbs.mkdir(); (site/'search').mkdir(parents=True)
    for n in ('index', '09_learner'): (nbs/f'{n}.ipynb').write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    (site/'index.html').write_text('<html><body><p>home</p></body></html>')
    (site/'learner.html').write_text(BAD_PAGE.replace('{long}', 'x' * 80))
    (site/'404.html').write_text('<html><head><link rel="stylesheet" href="/assets/main.css"></head></html>')
    (site/'search'/'search_index.json').write_text(json.dumps({'docs': [
        {'location': 'learner.html#learner', 'title': 'Learner¶', 'text': ''},
        {'location': 'learner.html#learner', 'title': 'Learner', 'text': 'Copied!'}]}))
    probs = docs.check(site, nbs)
    class Learner:
        def fit(self, n): pass
    probs += docs.check_api('learner.html', docs.parse_page(site/'learner.html'), {'Learner': Learner})
    for words in ['is in the index 2 times', 'is not clean text', 'Copied!', 'shares its anchor #learner with the heading',
                  'lands on a heading above the API entry', 'id #learner is used 2 times', 'API entry Learner.fit appears 2 times',
                  'shows a memory address', "class Learner is shown as 'def Learner'", 'characters',
                  '"chapter 09" is not a link', '404.html: resource /assets/main.css is absolute', '404.html: no stylesheet',
                  "raw '{target=' in", "raw '#|' in"]:
        assert _only(probs, words), f'no problem reported with {words!r}:\n' + '\n'.join(probs)

# ---------------------------------------------------------------- the pieces

def test_stable_defaults_and_lite_cells():
    def valley(): pass
    assert docs._default((valley,)) == '(valley,)' and docs._default([valley, max]) == '[valley, max]'
    assert docs._default(object()) == '<object object>' and docs._default(0.9) == '0.9'
    assert docs._imports_and_defs('import os\nx = slow()\n@dec\ndef f(): pass') == 'import os\n@dec\ndef f(): pass'
    assert docs._imports_and_defs('import os\ndef f(): pass') == 'import os\ndef f(): pass'

def test_conversion_pieces():
    cfg = docs.find_config(ROOT/'nbs')
    md = docs._relative('[a](https://optlib.github.io/optlib/core.html#add){target="_blank"}', cfg)
    assert md == '[a](core.html#add)'
    d, src = docs.directives('#| echo: false\n#| output: asis\nshow_doc(f)')
    assert d == {'echo': 'false', 'output': 'asis'} and src == 'show_doc(f)'
    assert docs.page_stem('09b_stateful.ipynb') == 'stateful' and docs.page_stem('index.ipynb') == 'index'
    assert docs.chapter_pages(ROOT/'nbs')['09b'] == 'stateful.html'

def test_chapter_links_and_unique_ids():
    ch = {'09': 'optimizer.html', '09b': 'stateful.html', '13': 'mnist1d.html', '14': 'mnist.html'}
    out = docs.link_chapters('<p>Chapter 09b\'s stats; chapters 13 and 14; chapter 99; <code>chapter 09</code> '
                             '<a href="x.html">chapter 09</a></p><h2 id="c">Chapter 09</h2>', ch)
    assert ('Chapter <a href="stateful.html">09b</a>\'s' in out and 'chapters <a href="mnist1d.html">13</a> and '
            '<a href="mnist.html">14</a>' in out and 'chapter 99' in out and '<code>chapter 09</code>' in out)
    assert '<a href="x.html">chapter 09</a>' in out and '<h2 id="c">Chapter 09</h2>' in out
    html = ('<h1 id="adam">Adam<a class="anchor-link" href="#adam">¶</a></h1><h2 id="adam">Adam</h2>'
            '<h3 class="nbdev-anchor" id="adam">Adam</h3>')
    assert docs._unique_ids(html) == ('<h1 id="adam-1">Adam<a class="headerlink" href="#adam-1">¶</a></h1>'
                                      '<h2 id="adam-2">Adam</h2><h3 class="nbdev-anchor" id="adam">Adam</h3>')

def test_optimizer_page_links_each_row():
    nb = docs.optimizer_page(FIXTURE_TABLE, docs.chapter_pages(ROOT/'nbs'))
    md = nb['cells'][0]['source']
    assert '<a href="stateful.html#adam">adamw</a>' in md and '<a href="stateful.html#sgd">sgd</a>' in md
    assert '<a href="https://arxiv.org/abs/1711.05101">' in md and r'\hat m' in md and '<code>torch.optim.AdamW</code>' in md
    assert 'hook=&lt;function f&gt;)' in md and '<td>formula</td>' in md  # no memory address
