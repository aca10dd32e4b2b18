"""The offline docs build (`python tools/docs.py`): build the site once from nbs/ and check it as a reader would need it.

Skips only when a docs dependency is missing (the mkdocs packages of settings.ini's dev requirements, or npm on a
machine that has not cached MathJax yet); the browser test also needs Chromium (`apt-get install -y chromium`).
"""
import importlib.util, shutil
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
_cached = all((docs.CACHE/'npm'/f"{s.rsplit('@', 1)[0]}-{s.rsplit('@', 1)[1]}.tgz").exists() for s in docs.NPM_ASSETS)
if not _cached and not shutil.which('npm'):
    pytest.skip('docs dependency npm is missing (needed once to fetch MathJax)', allow_module_level=True)

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    return docs.build(ROOT/'nbs', tmp_path_factory.mktemp('site')/'_docs', sidebar=False)

@pytest.fixture(scope='module')
def problems(site):
    return docs.check(site, ROOT/'nbs')

def _only(problems, *words):
    return [p for p in problems if any(w in p for w in words)]

def test_every_chapter_has_a_page(site, problems):
    assert (site/'index.html').exists()
    assert not _only(problems, 'has no page', 'no home page')
    for nb in docs.chapters(ROOT/'nbs'):
        assert (site/f'{docs.page_stem(nb)}.html').stat().st_size > 1000, nb.name

def test_api_reference_has_every_public_name(site, problems):
    names = docs.api_names('optlib')
    if not names: pytest.skip('optlib exports no public names yet')
    assert not _only(problems, 'show_doc entry', 'cannot import the API'), '\n'.join(problems)

def test_no_broken_internal_links(problems):
    assert not _only(problems, 'broken', ': no #', 'leaves the site', 'is absolute'), '\n'.join(problems)

def test_no_raw_syntax_in_pages(problems):
    assert not _only(problems, ': raw '), '\n'.join(problems)

def test_works_offline(site, problems):
    assert not _only(problems, 'from the internet'), '\n'.join(problems)
    assert (site/'assets'/'mathjax'/'tex-svg-full.js').stat().st_size > 100_000
    assert (site/'search'/'search_index.js').exists()  # search from file:// (offline plugin + iframe-worker)

def test_sidebar_yml_lists_the_chapters():
    sb = ROOT/'nbs'/'sidebar.yml'
    assert sb.exists() and sb.read_text() == docs.sidebar_yml(ROOT/'nbs'), \
        'nbs/sidebar.yml is out of date: run `python tools/docs.py` (or `python tools/docs.py --sidebar`)'

def test_no_problems_at_all(problems):
    assert problems == [], '\n'.join(problems)

def test_in_browser(site):
    bc = _tool('browser_check')
    exe = bc.find_chromium()
    if not exe: pytest.skip('no Chromium for the browser check (apt-get install -y chromium)')
    failed = bc.run(site, bc.pick_pages(site), ROOT/'_screenshots', exe)
    assert failed == 0, 'see the lines above and the screenshots in _screenshots/'

def test_conversion_of_quarto_syntax():
    md = docs.md_text('See \\(x^2\\) and `\\(kept\\)` [a](https://optlib.github.io/optlib/core.html#add){target="_blank"}\n'
                      '::: {.callout-note}\nnote\n:::', docs._site_prefixes(docs.find_config(ROOT/'nbs')))
    assert '$x^2$' in md and '`\\(kept\\)`' in md and '](core.html#add)' in md and '{target' not in md
    assert '<div class="qdiv callout-note">' in md and ':::' not in md
    d, src = docs.directives('#| echo: false\n#| output: asis\nshow_doc(f)')
    assert d == {'echo': 'false', 'output': 'asis'} and src == 'show_doc(f)'
    assert docs.page_stem('09b_stateful.ipynb') == 'stateful' and docs.page_stem('index.ipynb') == 'index'
    assert docs._lite('import os\nx = slow()\ndef f(): pass') == 'import os\ndef f(): pass'
    assert docs._lite('import os\ndef f(): pass') is None
