#!/usr/bin/env python
"""Check the built docs site (`_docs/`) in headless Chromium, as a reader would see it.

Serves `_docs/` on a loopback port and opens every page in Debian's Chromium (driven by Playwright, with no browser
download). A page passes when it loads with no JavaScript error and no failed local request, every image has been
decoded (non-zero natural width), and every local link points at an existing page and, where it has `#anchor`, at an
element with that id. Links to other hosts are counted, not followed (this machine is offline). Writes a screenshot of
each page to `_docs/_check/` and exits 1 listing every problem found.

    python tools/check_docs.py [--docs _docs] [--chromium /usr/bin/chromium]
"""
import argparse, functools, http.server, shutil, sys, threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

from playwright.sync_api import sync_playwright

ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync']


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


def serve(root):
    handler = functools.partial(Quiet, directory=str(root))
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f'http://127.0.0.1:{srv.server_address[1]}/'


def main(docs='_docs', chromium=None):
    root = Path(docs)
    pages = sorted(p.name for p in root.glob('*.html'))
    if not pages: sys.exit(f'no pages in {root}/: build the site first (python tools/docs.py)')
    chromium = chromium or shutil.which('chromium') or shutil.which('chromium-browser')
    if not chromium: sys.exit('Chromium not found: install Debian\'s `chromium` package (apt-get install chromium)')
    shots = root/'_check'; shots.mkdir(exist_ok=True)
    srv, base = serve(root)
    problems, ids, links, n_img, n_ext = [], {}, [], 0, 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
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
            links += [(name, h) for h in pg.eval_on_selector_all('a[href]', 'els => els.map(e => e.href)')]
            pg.screenshot(path=str(shots/(Path(name).stem + '.png')), full_page=False)
            pg.close()
            problems += [f'{name}: {e}' for e in dict.fromkeys(errors)]
            print(f'{name}: "{title}", {len(imgs)} images, {len(ids[name])} ids', flush=True)
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
    n_local = len(links) - n_ext
    print(f'{len(pages)} pages, {n_img} images, {n_local} local links checked, {n_ext} external links not followed; screenshots in {shots}/')
    if problems:
        print('\n'.join(['PROBLEMS:'] + problems))
        sys.exit(1)
    print('docs OK')


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--docs', default='_docs'); ap.add_argument('--chromium', default=None)
    main(**vars(ap.parse_args()))
