"""The project's self-contained pages: Jinja2 templates from `templates/` (HTML autoescaped) and matplotlib
figures embedded as PNG data URIs, so a report is one file that reads offline, next to what it reports on."""

from __future__ import annotations

import base64
import io

import jinja2

_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("cross_sell", "templates"),
                                autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)


def render(template: str, **values) -> str:
    return _TEMPLATES.get_template(template).render(**values)


def png(figure, dpi: int = 90) -> str:
    """The figure as a `data:image/png;base64,...` URI (and closed: pages draw many)."""
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
