"""The shop's live page: ``GET /`` (HTML) and ``GET /shop.js`` (what it does).

The HTML carries the page's Echo options (:func:`shop.settings.echo_options`:
the key, where soketi listens; never the secret) and the script URLs of
pusher-js and Laravel Echo (a CDN unless ``SHOP_PUSHER_JS_URL`` and
``SHOP_ECHO_JS_URL`` say otherwise).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from string import Template

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from shop import settings

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)


def render_page() -> str:
    """``static/index.html`` with the script URLs and the Echo options filled in."""
    options = json.dumps(settings.echo_options()).replace("<", "\\u003c")  # safe in <script>
    return Template((STATIC / "index.html").read_text("utf-8")).substitute(
        pusher_js=html.escape(settings.PUSHER_JS_URL),
        echo_js=html.escape(settings.ECHO_JS_URL),
        echo_options=options,
    )


@router.get("/", response_class=HTMLResponse)
def index() -> str:
    return render_page()


@router.get("/shop.js")
def script() -> FileResponse:
    return FileResponse(STATIC / "shop.js", media_type="text/javascript")
