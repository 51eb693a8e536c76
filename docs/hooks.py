"""mkdocs hook: the Sphinx roles in the package's numpy-style docstrings
(``:func:`~dask_coded.encode```) rendered as links to the API page's entries.

mkdocstrings renders a role as ``:func:<code>~dask_coded.encode</code>``; this turns it
into a link to the entry's anchor when the page has one (its id is the dotted path), and
into the code span alone otherwise. A leading ``~`` shows only the last name.
"""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):<code>(~?)([\w.]+)</code>")


def on_page_content(html: str, page, config, files) -> str:
    anchors = set(re.findall(r'id="([\w.]+)"', html))

    def link(match: re.Match) -> str:
        short, target = match.group(1), match.group(2)
        shown = target.rsplit(".", 1)[-1] if short else target
        for candidate in (target, f"dask_coded.{target}"):
            if candidate in anchors:
                return f'<a href="#{candidate}"><code>{shown}</code></a>'
        return f"<code>{shown}</code>"

    return ROLE.sub(link, html)
