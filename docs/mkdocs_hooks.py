"""mkdocs hooks: the site links to files outside docs/ as the repository does.

The pages link to the README, the plugins' READMEs, examples and source files
by relative paths that work on a forge. mkdocs only knows docs/, so this hook
adds each linked file to the site (the top-level README as the home page, the
rest under ``repo/``; Markdown files as pages, whose own links are followed
the same way) and rewrites the links to them. A link to a file that does not
exist is left alone, so ``mkdocs build --strict`` fails on it; so does a
link to a folder that has no README.md.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

log = logging.getLogger(f"mkdocs.plugins.{__name__}")

ROOT = Path(__file__).resolve().parent.parent
DOCS = "docs"
_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"(\]\()([^)\s]+)(\))")
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#|/)", re.IGNORECASE)


def site_uri(path: str) -> str:
    """Where the repository file ``path`` (relative to the root) is in the site."""
    if path.startswith(DOCS + "/"):
        return path[len(DOCS) + 1 :]
    if path == "README.md":
        return "index.md"
    return "repo/" + path


def _target(page: str, link: str) -> str | None:
    """The repository file a relative link of the file ``page`` points at, if it exists."""
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), link))
    if resolved.startswith("../"):
        return None
    found = ROOT / resolved
    if found.is_dir():
        readme = found / "README.md"
        if not readme.is_file():
            log.warning("%s links to the folder %r, which has no README.md", page, link)
            return None
        return posixpath.join(resolved, "README.md")
    return resolved if found.is_file() else None


def rewrite(markdown: str, page: str) -> tuple[str, set[str]]:
    """``markdown`` of the repository file ``page`` with its links pointed into the site.

    Returns the new text and the repository files it links to.
    """
    targets: set[str] = set()
    here = posixpath.dirname(site_uri(page))

    def link(match: re.Match[str]) -> str:
        url = match.group(2)
        if _EXTERNAL.match(url):
            return match.group(0)
        path, hash_, anchor = url.partition("#")
        target = _target(page, path)
        if target is None:  # missing: mkdocs reports it
            return match.group(0)
        targets.add(target)
        new = posixpath.relpath(site_uri(target), here or ".")
        return f"{match.group(1)}{new}{hash_}{anchor}{match.group(3)}"

    pieces, end = [], 0
    for fence in _FENCE.finditer(markdown):  # links inside code blocks are code
        pieces.append(_LINK.sub(link, markdown[end : fence.start()]))
        pieces.append(fence.group(0))
        end = fence.end()
    pieces.append(_LINK.sub(link, markdown[end:]))
    return "".join(pieces), targets


def on_files(files: Files, config: Any) -> Files:
    """Add every file outside docs/ that a page links to, following Markdown pages' links."""
    pending = ["README.md"]
    pending += [DOCS + "/" + f.src_uri for f in files.documentation_pages()]
    seen = set(pending)
    while pending:
        page = pending.pop()
        text = (ROOT / page).read_text(encoding="utf-8")
        new, targets = rewrite(text, page)
        if not page.startswith(DOCS + "/"):
            files.append(File.generated(config, site_uri(page), content=new))
        for target in sorted(targets - seen):
            seen.add(target)
            if target.endswith(".md"):
                pending.append(target)
            elif not target.startswith(DOCS + "/"):
                abs_path = str(ROOT / target)
                files.append(File.generated(config, site_uri(target), abs_src_path=abs_path))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """A docs/ page's links to files outside docs/, pointed at their copies in the site."""
    if page.file.generated_by:  # made by on_files, already rewritten
        return markdown
    return rewrite(markdown, DOCS + "/" + page.file.src_uri)[0]
