#!/usr/bin/env python
"""Check the built docs site (`_docs/`) in headless Chromium, as a reader would see it.

Serves `_docs/` on a loopback port and opens every page in Debian's Chromium (driven by Playwright, with no browser
download). A page passes when it loads with no JavaScript error and no failed local request, every image has been
decoded (non-zero natural width), and every local link points at an existing page and, where it has `#anchor`, at an
element with that id; at an 800 px window the text column keeps at least 600 px and nothing overflows the window; and
the search box, typed into, lists the symbol's section for a few symbol names. Links to other hosts are counted, not
followed (this machine is offline). Writes screenshots of each page at 1400 and 800 px to `_docs/_check/` and exits 1
listing every problem found. Also fails on a duplicate id, a page showing "Call self as a function.", a warning
or a machine path, API entries out of their source order, a raw markdown link `](` inside code, an empty table, code cut at the edge without a scrollbar,
a missing search index; and, before opening a browser, on warnings, stderr, paths or noise in the notebooks'
committed outputs (tools/check_outputs.py) and on a public parameter without a docment (tools/check_api.py).
`--selftest` first shows each page rule failing on a page made to break it.

    python tools/check_docs.py [--docs _docs] [--chromium /usr/bin/chromium] [--selftest]
"""
import argparse, functools, http.server, importlib, inspect, json, re, shutil, sys, threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_api, check_outputs

ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync']


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


def serve(root):
    handler = functools.partial(Quiet, directory=str(root))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f'http://127.0.0.1:{srv.server_address[1]}/'


BAD_TEXT = ('Call self as a function.', 'Warning:', '/tmp/', '/home/', '/work/', '/root/')  # docstring-less callables, warnings, machine paths
MIN_COLUMN = 600  # px of text at an 800 px window
SEARCHES = {'seed_everything': 'core.html#seed_everything', 'folder_pair': 'pairs.html#folder_pair', 'compare': 'experiment.html#compare', 'autopilot': 'autopilot.html#autopilot'}
SPELLINGS = {'normalization': 'normalisation', 'initialization': 'initialisation', 'minimization': 'minimisation'}  # a query in one spelling must find a section written in the other


PAGE_RULES = """() => {
  const out = [], code = [...document.querySelectorAll('article code, article pre')];
  for (const c of code) {
    const m = c.textContent.match(/\\]\\((https?:\\/\\/|[\\w.\\/-]+\\.(html|ipynb|md))[^)]*\\)/);
    if (m) out.push(`raw markdown link inside code: ${m[0].slice(0, 60)}`);
  }
  for (const t of document.querySelectorAll('article table')) {
    const cells = [...t.querySelectorAll('td')];
    if (!cells.length || cells.every(td => !td.textContent.trim())) out.push(`empty table: ${t.innerText.slice(0, 60).replace(/\\s+/g, ' ')}`);
  }
  return out;
}"""
READER_RULES = r"""() => {
  const out = [], code = el => !!el && el.matches('div.highlight') && !!el.querySelector('span.n, span.nf, span.nc, span.k');
  const output = el => !!el && ((el.matches('div.highlight') && !code(el)) || el.matches('table, img') || !!el.querySelector('img, table'));
  const heads = [...document.querySelectorAll('article h1, article h2, article h3')];
  const text = h => h.textContent.replace('\u00b6', '').trim();
  const seen = {};
  for (const h of heads) seen[text(h)] = (seen[text(h)] || 0) + 1;
  for (const [t, n] of Object.entries(seen)) if (n > 1) out.push(`heading shown ${n} times: ${t}`);
  for (const h of heads) {
    const sig = h.nextElementSibling;
    if (h.tagName !== 'H3' || !code(sig) || !/^\s*(async def|def|class)\s/.test(sig.textContent)) continue;  // an API entry: a heading, then its signature
    const name = text(h).split('.').pop().replace(/[^\w]/g, ''), uses = new RegExp('\\b' + name + '\\b', 'i');  // DANN is used as 'dann'
    let el = sig.nextElementSibling, used = false, shown = false;
    for (; el && !/^H[1-3]$/.test(el.tagName); el = el.nextElementSibling) {
      if (code(el)) used = used || uses.test(el.textContent);
      else if (used && output(el)) { shown = true; break; }
    }
    if (!shown) out.push(`API entry without an example (code using it, then its output): ${text(h)}`);
  }
  for (const el of document.querySelectorAll('article div.highlight')) {
    if (!code(el) || /^\s*(async def|def|class)\s/.test(el.textContent)) continue;
    for (const line of el.textContent.split('\n'))
      if (/^\s*(test_eq|test_ne|test_close|test_is|test_eq_type|test_stdout|test_warns|test_shuffled|assert)\b/.test(line)) out.push(`test call shown as content: ${line.trim().slice(0, 60)}`);
  }
  return out;
}"""
NARROW = 390  # px: a phone
KEY_COLUMNS = 3  # the columns of a table a phone must show without scrolling
NARROW_TABLES = """(k) => [...document.querySelectorAll('article table')].map(t => {
  const row = t.querySelector('tr'); if (!row) return null;
  const cells = [...row.children]; if (cells.length <= k) return null;
  let box = t.parentElement; while (box && box.tagName !== 'ARTICLE' && !['auto', 'scroll'].includes(getComputedStyle(box).overflowX)) box = box.parentElement;
  const right = Math.min(window.innerWidth, (box || t).getBoundingClientRect().right), edge = cells[k - 1].getBoundingClientRect().right;
  return edge > right + 1 ? `table's first ${k} columns do not fit at ${window.innerWidth} px (${Math.round(edge)} > ${Math.round(right)}): ${cells.slice(0, k).map(c => c.textContent.trim()).join(' | ').slice(0, 60)}` : null;
}).filter(x => x)"""
CLIPPED_CODE = """() => [...document.querySelectorAll('article pre')].map(p => p.querySelector('code') || p)
  .filter(box => box.scrollWidth > box.clientWidth + 1 && !['auto', 'scroll'].includes(getComputedStyle(box).overflowX))
  .map(box => `code cut at the edge (no scrollbar): ${box.textContent.trim().slice(0, 50)}`)"""  # at each window width
NARROW_SIGNATURES = """() => [...document.querySelectorAll('article h3 + div.highlight')]
  .filter(d => /^\\s*(async def|def|class)\\s/.test(d.textContent)).map(d => d.querySelector('code') || d)
  .filter(c => c.scrollWidth > c.clientWidth + 1)
  .map(c => `signature scrolls sideways at ${window.innerWidth} px: ${c.textContent.trim().slice(0, 50)}`)"""  # a phone reads every parameter


@functools.cache
def source_lines() -> dict:
    "Each public symbol of transfer_nb: (module, the line it is defined on)."
    out = {}
    for m in check_api.MODULES:
        mod = importlib.import_module(f'transfer_nb.{m}')
        for n in getattr(mod, '__all__', []):
            try: out[n] = (m, inspect.getsourcelines(getattr(mod, n))[1])
            except (TypeError, OSError): pass  # constants have no source lines
    return out


def out_of_order(headings) -> list:
    "The API entries among `headings` that come before one defined above them in the same module."
    seen, out = {}, []
    for h in headings:
        if h not in source_lines(): continue
        m, line = source_lines()[h]
        if line < seen.get(m, (0, ''))[0]: out.append(f'{h} is shown after {seen[m][1]}, which its module defines below it')
        seen[m] = max(seen.get(m, (0, '')), (line, h))
    return out


def page_problems(pg) -> list:
    "What a reader would trip over on the page open in `pg`, at its current window width."
    errors = []
    all_ids = pg.eval_on_selector_all('[id]', 'els => els.map(e => e.id)')
    errors += [f'duplicate id {i!r}' for i in sorted({i for i in all_ids if all_ids.count(i) > 1})]
    text = pg.inner_text('article')
    errors += [f'shows {bad!r}' for bad in BAD_TEXT if bad in text]
    errors += out_of_order([h.strip() for h in pg.eval_on_selector_all('article h3', 'els => els.map(e => e.textContent)')])
    return errors + pg.evaluate(PAGE_RULES) + pg.evaluate(READER_RULES) + pg.evaluate(CLIPPED_CODE)


BROKEN = """<article class="md-content__inner">
<h1 id="a">A page built to break every rule</h1><p id="a">same id twice</p><h3>fit_classifier</h3><h3>evaluate</h3>
<p>Call self as a function.</p><p>UserWarning: something</p><p>saved in /tmp/xyz</p>
<pre><code>see [the docs](core.html#x)</code></pre>
<table><thead><tr><th>epoch</th><th>train_loss</th></tr></thead><tbody></tbody></table>
<pre style="overflow: hidden; width: 200px"><code style="overflow: hidden; display: block">""" + 'x = 1; ' * 60 + """</code></pre>
<h3>evaluate</h3>
<h3>plot_bars</h3><div class="highlight"><pre><code><span class="k">def</span> <span class="nf">plot_bars</span>(df)</code></pre></div><p>Bars.</p>
<h2>Next</h2><div class="highlight"><pre><code><span class="n">test_eq</span>(<span class="mi">1</span>, <span class="mi">1</span>)</code></pre></div>
<h3>compare</h3><div class="highlight"><pre><code style="display: block; overflow-x: auto"><span class="k">def</span> <span class="nf">compare</span>(pair, # """ + 'a long docment ' * 12 + """)</code></pre></div>
<div style="width: 380px; overflow-x: auto"><table><tr><th>pair</th><th>""" + 'x' * 80 + """</th><th>b</th><th>c</th></tr><tr><td>1</td><td>2</td><td>3</td><td>4</td></tr></table></div>
</article>"""
EXPECTED = ["duplicate id 'a'", "shows 'Call self as a function.'", "shows 'Warning:'", "shows '/tmp/'",
            'raw markdown link inside code', 'empty table', 'code cut at the edge', 'evaluate is shown after fit_classifier',
            'heading shown 2 times: evaluate', 'API entry without an example (code using it, then its output): plot_bars',
            'test call shown as content: test_eq(1, 1)', "table's first 3 columns do not fit at 390 px",
            'signature scrolls sideways at 390 px: def compare(pair']


def run_selftest(browser) -> list:
    "Each page rule must fire on a page made to break it, and none on a clean one."
    pg = browser.new_page(viewport={'width': 800, 'height': 1000})
    pg.set_content(BROKEN)
    found = page_problems(pg)
    pg.set_viewport_size({'width': NARROW, 'height': 900}); found += pg.evaluate(NARROW_TABLES, KEY_COLUMNS) + pg.evaluate(NARROW_SIGNATURES); pg.set_viewport_size({'width': 800, 'height': 1000})
    missed = [f'selftest: the rule for {e!r} did not fire (found {found})' for e in EXPECTED if not any(e in f for f in found)]
    pg.set_content('<article><h1 id="ok">Clean</h1><pre style="overflow:auto;width:200px"><code>' + 'y = 2; ' * 60 +
                   '</code></pre><table><tr><td>1</td></tr></table>'
                   '<h3>plot_bars</h3><div class="highlight"><pre><code><span class="k">def</span> <span class="nf">plot_bars</span>(df)</code></pre></div><p>Bars.</p>'
                   '<div class="highlight"><pre><code><span class="n">plot_bars</span>(<span class="n">df</span>)\n<span class="n">test_fail</span>(f)</code></pre></div><p><img src="x.png"></p>'
                   '<table><tr><th>a</th><th>b</th><th>c</th><th>' + 'x' * 200 + '</th></tr><tr><td>1</td><td>2</td><td>3</td><td>4</td></tr></table></article>')
    missed += [f'selftest: a clean page reported {f!r}' for f in page_problems(pg) if 'image' not in f]
    pg.set_viewport_size({'width': NARROW, 'height': 900})
    missed += [f'selftest: a clean page reported {f!r} at {NARROW} px' for f in pg.evaluate(NARROW_TABLES, KEY_COLUMNS) + pg.evaluate(NARROW_SIGNATURES)]
    pg.close()
    print(f'selftest: {len(EXPECTED)} page rules fire on a broken page, none on a clean one' if not missed else '\n'.join(missed), flush=True)
    return missed


def spelled_only(root:Path, word:str, other:str) -> list:
    "The pages of the site in `root` whose text holds `word` and never `other`."
    strip = lambda h: re.sub(r'<[^>]+>', ' ', h).lower()
    return sorted(p.name for p in root.glob('*.html') if p.name != '404.html' and word in (t := strip(p.read_text())) and other not in t)


OWED = Path(__file__).resolve().parent/'examples_owed.txt'  # API entries still without an example: this list may only shrink
NO_EXAMPLE = 'API entry without an example (code using it, then its output): '


def owed(problems:list) -> list:
    "The problems, less the API entries listed in examples_owed.txt as still owing an example; a listed entry that has one now is a problem (take it off)."
    listed = {l.strip() for l in OWED.read_text().splitlines() if l.strip() and not l.startswith('#')} if OWED.exists() else set()
    missing = {p.replace(NO_EXAMPLE, '') for p in problems if NO_EXAMPLE in p}
    if listed: print(f'{len(listed & missing)} API entries still owe an example ({OWED.name})', flush=True)
    return [p for p in problems if p.replace(NO_EXAMPLE, '') not in listed] + [f'{e}: has an example now; take it off {OWED.name}' for e in sorted(listed - missing)]


def search(browser, base, root:Path) -> list:
    "Type symbol names, and words in the other spelling (US/UK), into the site's search box as a reader would; each must list the section that holds it."
    problems, pg = [], browser.new_page(viewport={'width': 1400, 'height': 1000})
    queries = dict(SEARCHES)
    for query, written in SPELLINGS.items():
        where = spelled_only(root, written, query)
        if where: queries[query] = sorted(where)
        else: problems.append(f'search: no section spells {written!r} (and not {query!r}) to check that {query!r} finds it')
    for query, want in queries.items():
        pg.goto(base + 'index.html', wait_until='load')
        pg.fill('input.md-search__input', query)
        try: pg.wait_for_selector('.md-search-result__item a', timeout=180000)  # the browser builds the index first: slow on a loaded machine
        except Exception: problems.append(f'search: no results for {query!r}'); continue
        pg.wait_for_timeout(300)
        hrefs = [re.sub(r'\?[^#]*', '', h.split('/')[-1]) for h in pg.eval_on_selector_all('.md-search-result__item a', 'els => els.map(e => e.href)')]
        print(f'search {query!r}: {len(hrefs)} results, first {hrefs[:3]}', flush=True)
        wants = [want] if isinstance(want, str) else want
        if not any(w in hrefs or ('#' not in w and any(h.split('#')[0] == w for h in hrefs)) for w in wants): problems.append(f'search: {query!r} does not list {" or ".join(wants[:3])} (got {hrefs[:5]})')
    pg.close()
    return problems


def main(docs='_docs', chromium=None, selftest=False):
    root = Path(docs)
    problems = check_outputs.check(Path(__file__).resolve().parents[1]/'nbs') + check_api.check()
    pages = sorted(p.name for p in root.glob('*.html') if p.name != '404.html')  # 404.html uses the host's absolute paths
    if not pages: sys.exit(f'no pages in {root}/: build the site first (python tools/docs.py)')
    chromium = chromium or shutil.which('chromium') or shutil.which('chromium-browser')
    if not chromium: sys.exit('Chromium not found: install Debian\'s `chromium` package (apt-get install chromium)')
    shots = root/'_check'; shots.mkdir(exist_ok=True)
    index = root/'search'/'search_index.json'
    if not index.exists() or len(json.loads(index.read_text()).get('docs', [])) < len(pages): sys.exit(f'no usable search index at {index}')
    srv, base = serve(root)
    ids, links, n_img, n_ext = {}, [], 0, 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
        if selftest: problems += run_selftest(browser)
        for name in pages:
            pg, errors = browser.new_page(viewport={'width': 1400, 'height': 1000}), []  # a fresh page: its own listeners
            pg.on('pageerror', lambda e: errors.append(f'JavaScript error: {e}'))
            pg.on('requestfailed', lambda r: errors.append(f'failed request {r.url}') if r.url.startswith(base) else None)
            resp = pg.goto(base + name, wait_until='load')
            if not resp or resp.status != 200: errors.append(f'HTTP {resp.status if resp else "no response"}')
            title = pg.title()
            if not title.strip(): errors.append('empty <title>')
            imgs = pg.eval_on_selector_all('img', 'els => els.map(e => [(e.getAttribute("src") || "").slice(0, 40), e.complete && e.naturalWidth > 0])')
            n_img += len(imgs)
            errors += [f'image not shown: {src}…' for src, ok in imgs if not ok]
            ids[name] = set(pg.eval_on_selector_all('[id]', 'els => els.map(e => e.id)'))
            errors += page_problems(pg)
            links += [(name, h) for h in pg.eval_on_selector_all('a[href]', 'els => els.map(e => e.href)')]
            pg.screenshot(path=str(shots/(Path(name).stem + '-1400.png')), full_page=False)
            pg.set_viewport_size({'width': 800, 'height': 1000})  # a narrow window: the text must keep its width, nothing may overflow
            pg.wait_for_timeout(100)
            col, over = pg.evaluate('() => [document.querySelector(".md-content__inner").getBoundingClientRect().width, '
                                    'document.documentElement.scrollWidth - window.innerWidth]')
            if col < MIN_COLUMN: errors.append(f'text column {col:.0f} px wide at 800 px (needs {MIN_COLUMN})')
            if over > 0: errors.append(f'the page overflows an 800 px window by {over} px')
            errors += [f'at 800 px: {e}' for e in pg.evaluate(CLIPPED_CODE)]
            pg.screenshot(path=str(shots/(Path(name).stem + '-800.png')), full_page=False)
            pg.set_viewport_size({'width': NARROW, 'height': 844})  # a phone: the key columns of every table in view
            pg.wait_for_timeout(100)
            errors += pg.evaluate(NARROW_TABLES, KEY_COLUMNS) + pg.evaluate(NARROW_SIGNATURES)
            pg.screenshot(path=str(shots/(Path(name).stem + f'-{NARROW}.png')), full_page=False)
            pg.close()
            problems += [f'{name}: {e}' for e in dict.fromkeys(errors)]
            print(f'{name}: "{title}", {len(imgs)} images, {len(ids[name])} ids', flush=True)
        problems += search(browser, base, root)
        browser.close()
    srv.shutdown()
    for src, href in links:
        url, frag = urldefrag(href)
        frag = unquote(frag)
        if not url.startswith(base):
            n_ext += urlparse(url).scheme in ('http', 'https')
            continue
        target = url[len(base):] or 'index.html'
        if target not in ids: problems.append(f'{src}: link to missing page {target}')
        elif frag and frag not in ids[target]: problems.append(f'{src}: link to missing anchor {target}#{frag}')
    problems = owed(problems)
    n_local = len(links) - n_ext
    print(f'{len(pages)} pages, {n_img} images, {n_local} local links checked, {n_ext} external links not followed; screenshots in {shots}/')
    if problems:
        print('\n'.join(['PROBLEMS:'] + problems))
        sys.exit(1)
    print('docs OK')


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--docs', default='_docs'); ap.add_argument('--chromium', default=None)
    ap.add_argument('--selftest', action='store_true', help='first check that each page rule fires on a page built to break it')
    main(**vars(ap.parse_args()))
