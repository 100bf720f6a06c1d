"""The project's self-contained pages: Jinja2 templates from `templates/` and matplotlib figures embedded as
PNG data URIs, so a report is one file that reads offline, next to what it reports on.

Every value a template prints is data, whatever it holds (a category value from a snapshot, a reason, an
approver's comment, a run id): it is escaped for the page's language, never interpreted.

* `*.md.j2`: markdown. Each printed value has every character markdown or HTML could give a meaning to
  backslash-escaped and its line breaks folded (`markdown_text`): no link, image, tag, table cell or
  heading can come from a value. `markdown_to_html` turns such a page into HTML with raw HTML disabled.
* every other template (`*.html.j2` and whatever is added later): HTML autoescaping, whatever the name
  ends with (`select_autoescape(["html"])` matched `.html` only, so the `.html.j2` pages were not escaped).
"""

from __future__ import annotations

import base64
import io
import re

import jinja2
from markupsafe import Markup

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that start or end a
# construct inside a line (emphasis, code span, link, image, autolink, raw HTML, entity, table cell,
# strikethrough, heading). A value never starts a line of the templates and its line breaks are folded, so
# the line-start-only markers (list items, setext underlines) cannot come from one.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]()<>#!|&~])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")


def _underscores(found: re.Match) -> str:
    """A run of `_` between two letters or digits (Previously_Insured, manual__2026) cannot open or close
    emphasis and stays as it is; any other run is escaped."""
    text, start, end = found.string, found.start(), found.end()
    if 0 < start and end < len(text) and text[start - 1].isalnum() and text[end].isalnum():
        return found.group()
    return "\\_" * (end - start)


def markdown_text(value) -> str:
    """`value` as literal markdown text: shown as it is by any CommonMark renderer, on one line."""
    if value is None:
        return "None"
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(value)))
    return re.sub(r"_+", _underscores, escaped)


_LOADER = jinja2.PackageLoader("cross_sell", "templates")
_HTML = jinja2.Environment(loader=_LOADER, autoescape=True, undefined=jinja2.StrictUndefined)
_MARKDOWN = jinja2.Environment(loader=_LOADER, autoescape=False, finalize=markdown_text,
                               undefined=jinja2.StrictUndefined)


def render(template: str, **values) -> str:
    environment = _MARKDOWN if template.endswith(".md.j2") else _HTML
    return environment.get_template(template).render(**values)


def markdown_to_html(markdown: str, title: str) -> str:
    """A markdown page (rendered by `render` from a `.md.j2` template) as one self-contained HTML page:
    CommonMark and tables, raw HTML off (written as text), links only to http(s) and relative targets."""
    from markdown_it import MarkdownIt

    class Markdown(MarkdownIt):
        def validateLink(self, url: str) -> bool:  # noqa: N802  (markdown-it's name)
            return re.match(r"^(https?:|[^:]*$)", url.strip(), re.I) is not None

    parser = Markdown("commonmark", {"html": False, "linkify": False}).enable("table")
    return render("markdown_page.html.j2", title=title, body=Markup(parser.render(markdown)))


def png(figure, dpi: int = 90) -> str:
    """The figure as a `data:image/png;base64,...` URI (and closed: pages draw many)."""
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
