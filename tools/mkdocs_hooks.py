"""MkDocs hooks of transfer_nb's site (tools/docs.py names this file in the generated mkdocs.yml).

Heading ids are made as Quarto makes them, so that the links nbdev writes (`data.html#domainpair.pool_sample`: lower
case, dots kept) land on their symbol, on this site as on a Quarto one.
"""
import html, re


def slug(value:str, separator:str='-') -> str:
    "Quarto's heading id: lower case, spaces to `separator`, only letters, digits, `_`, `-` and `.` kept."
    text = re.sub(r'<[^>]+>', '', html.unescape(value)).strip().lower().replace('¶', '')
    return re.sub(r'[^\w.\- ]', '', text).strip().replace(' ', separator)


def on_config(config, **kwargs):
    config.mdx_configs.setdefault('toc', {})['slugify'] = slug
    return config


_IZE = re.compile(r'\b([a-z]{3,}?)i([sz])(e|ed|es|ing|ation|ations|er|ers)\b', re.I)
_PAIRS = [('colour', 'color'), ('behaviour', 'behavior'), ('neighbour', 'neighbor'), ('favour', 'favor'), ('grey', 'gray'),
          ('centre', 'center'), ('labelled', 'labeled'), ('labelling', 'labeling'), ('modelling', 'modeling'), ('analyse', 'analyze'),
          ('catalogue', 'catalog'), ('licence', 'license')]


def spellings(text:str) -> list:
    "The other spelling (UK ↔ US) of each word of `text` that has one: normalisation → normalization, optimizer → optimiser, colour → color."
    out = {m[1] + 'i' + ('z' if m[2].lower() == 's' else 's') + m[3] for m in _IZE.finditer(text)}
    low = text.lower()
    for uk, us in _PAIRS:
        if uk in low: out.add(us)
        if us in low: out.add(uk)
    return sorted(out)


def on_post_build(config, **kwargs):
    "Search finds a section by either spelling: the other spellings of its words are added to the text of its search-index entry (not to the page)."
    import json
    from pathlib import Path
    index = Path(config.site_dir)/'search'/'search_index.json'
    if not index.exists(): return
    data = json.loads(index.read_text())
    for e in data.get('docs', []):
        extra = spellings(e.get('title', '') + ' ' + e.get('text', ''))
        if extra: e['text'] = e.get('text', '') + ' ' + ' '.join(extra)
    index.write_text(json.dumps(data, ensure_ascii=False, separators=(',', ':')))
