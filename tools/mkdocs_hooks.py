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
