"""Every python block of the documentation runs, and what the docs quote is true.

The documents: ``README.md``, ``core/README.md``, ``docs/*.md``, the plugin
READMEs (``plugins/*/README.md``) and the example driver's
(``examples/*/README.md``). Each ```` ```python ```` block in them is one test
case, which executes the block as written:

- A block may be named by the HTML comment right before it,
  ``<!-- snippet: NAME -->`` (``<!-- example: NAME -->`` in the guide). A
  named block may have a runner here (``@runs(doc, name)``) that gives it the
  namespace it assumes (``config``, a server's URL, a config file at
  ``config/broadcast.py``) and then checks what it claims against the real
  parts: the Pusher blocks publish to a real soketi and a real WebSocket
  subscriber must receive them; the Ably blocks publish through the real SDK
  to the HTTPS emulator of tests/servers/ably_emulator.py; the webhook blocks
  to a real local HTTP server; the FastAPI and Flask blocks are driven by
  those frameworks' own test clients.
- Any other block runs as written in an empty namespace: a block that does
  not run fails its test (``test_an_unmarked_block_that_does_not_run_fails``
  proves it). ``<!-- snippet: skip REASON -->`` marks a deliberate fragment;
  there are none at present, and at most a few are allowed.

Top-level ``await`` is allowed in the docs (a block with it runs whole
inside ``asyncio.run``, so its sync calls also prove that ``channel()``
works from inside a running loop); the README's quickstart has none.

The other checks: figures quoted from the benchmarks (after a
``<!-- bench: KEY ... -->`` marker) appear in those rows of
``benchmarks/results/latest.md``, and docs/benchmarks.md shows the latest
results (``python tests/test_docs.py`` copies them in); every
``pip install ./path`` names a package folder of this checkout, and every
PyPI name a package built here; the tables of options and errors list what
the code has; a driver written from the guide imports only
``broadcasting.plugin``, and the guide's whole Acme driver, installed with
its entry point, passes the conformance kit.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import importlib.util
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import threading
import types
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
for _path in (TESTS, TESTS / "servers"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from http_proxy import CountingProxy  # noqa: E402
from pusher_ws import Event, PusherSubscriber  # noqa: E402
from soketi_pytest import start_soketi  # noqa: E402
from soketi_server import SoketiServer  # noqa: E402

from broadcasting import (  # noqa: E402
    Broadcast,
    ConfigurationError,
    ForbiddenError,
    InvalidChannelError,
    InvalidEventError,
    NotSupportedError,
    PayloadTooLargeError,
    PublishError,
    Receipt,
    hookspecs,
)
from broadcasting.drivers.null import BroadcastNullDriver  # noqa: E402
from broadcasting.plugin import (  # noqa: E402
    Answer,
    Batch,
    Capabilities,
    Driver,
    Limits,
    Message,
    hookspec,
    register_driver,
    unregister_driver,
)
from servers.ably_emulator import LIMITED_KEY, AblyEmulator  # noqa: E402

DOCS = (
    ROOT / "README.md",
    ROOT / "core" / "README.md",
    *sorted(p for p in (ROOT / "docs").glob("*.md") if not p.name.startswith("_")),
    *sorted(ROOT.glob("plugins/*/README.md")),
    *sorted(ROOT.glob("examples/*/README.md")),
)
MAX_SKIPPED = 3

_BLOCK = re.compile(r"^```python\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"<!-- (?:snippet|example): (.+?) -->\s*\Z")


@dataclass(frozen=True)
class Block:
    """One python block of a document."""

    doc: str  # the document, relative to the repository root
    line: int  # the line of the block's first code line
    name: str | None  # from the marker right before it, if any
    code: str

    @property
    def skip_reason(self) -> str | None:
        if self.name is not None and self.name.startswith("skip"):
            return self.name[len("skip") :].strip() or "(no reason given)"
        return None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.name or self.line}"


def blocks_of(path: Path, root: Path = ROOT) -> list[Block]:
    """The python blocks of one markdown file, in order."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _BLOCK.finditer(text):
        before = text[: match.start()]
        marker = _MARKER.search(before)
        found.append(
            Block(
                doc=path.relative_to(root).as_posix(),
                line=before.count("\n") + 2,
                name=marker.group(1).strip() if marker else None,
                code=match.group(1),
            )
        )
    return found


BLOCKS = [block for doc in DOCS for block in blocks_of(doc)]


def block(doc: str, name: str) -> Block:
    """The block called ``name`` in ``doc``."""
    matches = [b for b in BLOCKS if b.doc == doc and b.name == name]
    assert len(matches) == 1, f"{doc} should have exactly one block named {name!r}"
    return matches[0]


# -- running a block ---------------------------------------------------------------------


def compiled(b: Block, flags: int = 0) -> types.CodeType:
    """The block's code object; its line numbers are the document's.

    Compiled as a user's module would be: without this file's own ``from
    __future__`` imports (``dont_inherit``), so a block's annotations are real
    objects (a ``@dataclass`` in a block needs that) unless ``flags`` asks.
    """
    source = "\n" * (b.line - 1) + b.code
    return compile(
        source,
        str(ROOT / b.doc),
        "exec",
        flags=flags | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )


def execute(b: Block, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the block in ``namespace`` (top-level await: inside ``asyncio.run``)."""
    namespace = {} if namespace is None else namespace
    namespace.setdefault("__name__", "docs_block")
    result = eval(compiled(b), namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)
    return namespace


def class_body(b: Block, namespace: dict[str, Any]) -> dict[str, Any]:
    """Run a block of methods or class attributes as a class body: what it defines."""
    body: dict[str, Any] = {}
    exec(compiled(b), {"__name__": "docs_block", **namespace}, body)
    return body


def public(obj: object) -> dict[str, Any]:
    """An object's public attributes (what the conformance kit inspects for secrets)."""
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


def close_all(namespace: dict[str, Any]) -> None:
    for value in namespace.values():
        if isinstance(value, Broadcast):
            value.close()


# -- the real parts ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator_server() -> Iterator[AblyEmulator]:
    with AblyEmulator() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_driver_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BROADCAST_DRIVER", raising=False)
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)  # urllib would send 127.0.0.1 through it


class Watcher:
    """A Pusher WebSocket subscriber on soketi, on an event loop of its own thread.

    The blocks run their own loops (or none); the subscriber must not depend
    on them. :meth:`received` publishes a marker to the first channel watched
    and returns everything soketi delivered before it: soketi handles
    publishes in order and one connection's frames arrive in order, so
    nothing delivered earlier is still on its way.
    """

    def __init__(self, soketi: SoketiServer) -> None:
        self._soketi = soketi
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._events: list[Event] = []
        self._marked = threading.Event()
        self._marker = f"marker-{uuid.uuid4().hex}"
        self._channels: list[str] = []
        self._subscriber = self._run(
            PusherSubscriber(soketi.ws_url(), on_event=self._on_event).connect()
        )

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(20)

    def _on_event(self, event: Event) -> None:
        if event.data == self._marker:
            self._marked.set()
        else:
            self._events.append(event)

    def watch(self, *channels: str) -> None:
        self._run(self._subscriber.subscribe(*channels))
        self._channels.extend(channels)

    def received(self) -> list[Event]:
        with Broadcast(
            {"DRIVER": "pusher", "DRIVERS": {"pusher": pusher_options(self._soketi)}}
        ) as b:
            b.channel(self._channels[0], self._marker, "marker")
        assert self._marked.wait(10), "the marker never arrived"
        return list(self._events)

    def close(self) -> None:
        self._run(self._subscriber.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def pusher_options(soketi: SoketiServer, **overrides: Any) -> dict[str, Any]:
    return soketi.driver_options(**overrides)


class Recorder(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 that records every POST and answers 204."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self._thread.join()
        self.server_close()


class _RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts.append((self.path, dict(self.headers.items()), body))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


WEBHOOK_SECRET = "whsec-docs-0123456789abcdef"
ACME_KEY = "acme-key-docs-0123456789"


class Docs:
    """What a runner may need, made on first use: fixtures, servers, files."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        # requested before the block runs, so they see all it prints and logs
        self.tmp_path: Path = request.getfixturevalue("tmp_path")
        self.monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
        self.capsys: pytest.CaptureFixture[str] = request.getfixturevalue("capsys")
        self.caplog: pytest.LogCaptureFixture = request.getfixturevalue("caplog")

    def fixture(self, name: str) -> Any:
        return self.request.getfixturevalue(name)

    @cached_property
    def soketi(self) -> SoketiServer:
        server: SoketiServer = self.fixture("soketi")
        return server

    @cached_property
    def emulator(self) -> AblyEmulator:
        """The Ably emulator, reset, its CA handed to the SDK's httpx clients."""
        server: AblyEmulator = self.fixture("emulator_server")
        server.reset()
        server.batch_format = "legacy"
        self.monkeypatch.setenv("SSL_CERT_FILE", server.ca_path)
        self.monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        return server

    @contextmanager
    def watcher(self, *channels: str) -> Iterator[Watcher]:
        watcher = Watcher(self.soketi)
        try:
            watcher.watch(*channels)
            yield watcher
        finally:
            watcher.close()

    @contextmanager
    def webhook_receiver(self) -> Iterator[Any]:
        from broadcasting_webhook.receiver import WebhookReceiver

        with WebhookReceiver(WEBHOOK_SECRET) as receiver:
            yield receiver

    def config_file(self, driver: str, options: dict[str, Any]) -> Path:
        """``config/broadcast.py`` in a fresh working directory, for ``driver``."""
        self.monkeypatch.chdir(self.tmp_path)
        path = self.tmp_path / "config" / "broadcast.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"DRIVER = {driver!r}\nDRIVERS = {{{driver!r}: {options!r}}}\n")
        return path

    def module_from(self, b: Block) -> types.ModuleType:
        """The block saved as ``config/broadcast.py`` and imported, as an app would."""
        path = self.tmp_path / "config" / "broadcast.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(b.code, encoding="utf-8")
        spec = importlib.util.spec_from_file_location("config.broadcast", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def acme_package(self, init: Block, legacy: str | None = None) -> types.ModuleType:
        """``broadcasting_acme`` built from the guide's files, importable for this test."""
        package = self.tmp_path / "src" / "broadcasting_acme"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(init.code, encoding="utf-8")
        driver = block("docs/writing-a-driver.md", "acme-driver")
        (package / "_driver.py").write_text(driver.code, encoding="utf-8")
        if legacy is not None:
            (package / "_legacy.py").write_text(legacy, encoding="utf-8")
        self.monkeypatch.syspath_prepend(str(package.parent))
        self.request.addfinalizer(_forget_acme)
        _forget_acme()
        return importlib.import_module("broadcasting_acme")


def _forget_acme() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "broadcasting_acme"]:
        del sys.modules[name]


Runner = Callable[[Block, Docs], None]
RUNNERS: dict[tuple[str, str], Runner] = {}


def runs(doc: str, name: str) -> Callable[[Runner], Runner]:
    """Register the runner of block ``name`` of ``doc``."""

    def register(runner: Runner) -> Runner:
        assert (doc, name) not in RUNNERS
        RUNNERS[(doc, name)] = runner
        return runner

    return register


def run_as_written(b: Block, docs: Docs) -> None:
    """An unmarked block, or one that needs nothing: as written, in an empty namespace."""
    close_all(execute(b))


# -- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("b", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block_runs(b: Block, request: pytest.FixtureRequest) -> None:
    if b.skip_reason is not None:
        pytest.skip(f"marked as a fragment: {b.skip_reason}")
    runner = RUNNERS.get((b.doc, b.name or ""), run_as_written)
    runner(b, Docs(request))


def test_the_docs_have_their_blocks() -> None:
    assert len(BLOCKS) >= 30
    for doc in DOCS:
        names = [b.name for b in blocks_of(doc) if b.name]
        assert len(names) == len(set(names)), f"{doc}: a block name is used twice"


def test_every_runner_has_its_block() -> None:
    for doc, name in RUNNERS:
        block(doc, name)


def test_few_blocks_are_skipped_and_each_says_why() -> None:
    skipped = [b for b in BLOCKS if b.skip_reason is not None]
    assert len(skipped) <= MAX_SKIPPED, [b.id for b in skipped]
    assert all(b.skip_reason != "(no reason given)" for b in skipped)


def test_an_unmarked_block_that_does_not_run_fails(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The README's FastAPI block as it was (no imports, no config) is caught."""
    doc = tmp_path / "README.md"
    doc.write_text(
        "# x\n\n```python\n# FastAPI\nbroadcast = Broadcast('config/broadcast.py')\n"
        "app = FastAPI()\n```\n",
        encoding="utf-8",
    )
    [broken] = blocks_of(doc, root=tmp_path)
    assert broken.name is None and broken.line == 4
    with pytest.raises(NameError, match="Broadcast") as info:
        run_as_written(broken, Docs(request))
    # the traceback points at the document's own line
    assert info.traceback[-1].lineno + 1 == 5


# -- README.md -------------------------------------------------------------------------------


@runs("README.md", "quickstart")
def _readme_quickstart(b: Block, docs: Docs) -> None:
    """As a bare script: logging not configured, the lines the block shows go to stderr."""
    shown = re.findall(r"^# (broadcasting: .*)$", b.code, re.M)
    assert len(shown) == 2, "the block should show the lines it prints"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging.getLogger(), "handlers", [])  # pytest's own handlers
        docs.capsys.readouterr()
        execute(b)
        printed = docs.capsys.readouterr()
    assert printed.err.splitlines() == shown
    assert re.fullmatch(r"log: 'shipped' -> orders \(id [\w-]{16}\)\n", printed.out), printed.out


def test_the_readme_is_short_and_its_code_is_complete() -> None:
    """At most 250 lines; each block is a whole program: no top-level await, no free names."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    readme = [b for b in BLOCKS if b.doc == "README.md"]
    assert readme
    for b in readme:
        compile(b.code, b.id, "exec", dont_inherit=True)  # a SyntaxError for top-level await
        tree = ast.parse(b.code)
        bound = {"__name__", *dir(builtins)} | {
            alias.asname or alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        }
        bound |= {
            node.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
        }
        bound |= {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        }
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert used <= bound, f"{b.id} uses {sorted(used - bound)} without defining them"


PUSHER_ENV = {"PUSHER_APP_ID": "1234567", "PUSHER_CLIENT": "docs-app-key"}
PUSHER_SECRET = "docs-pusher-secret-0123"
ABLY_SECRET = "docsapp.keyid:docs-ably-secret-4567"


@runs("README.md", "live")
def _readme_live(b: Block, docs: Docs) -> None:
    """The file builds the pusher driver from the environment; no secret shows."""
    for name, value in {
        "PUSHER_APP_ID": "1234567",
        "PUSHER_KEY": "docs-app-key",
        "PUSHER_SECRET": PUSHER_SECRET,
    }.items():
        docs.monkeypatch.setenv(name, value)
    docs.monkeypatch.chdir(docs.tmp_path)
    with Broadcast(docs.module_from(b)) as broadcast:
        pusher = broadcast.driver()
        settings = pusher.driver.settings  # type: ignore[attr-defined]
        assert (pusher.name, settings.host, settings.app_id) == (
            "pusher",
            "api-eu.pusher.com",
            "1234567",
        )
        assert PUSHER_SECRET not in repr(pusher) + repr(public(pusher.driver))


@runs("README.md", "live-use")
def _readme_live_use(b: Block, docs: Docs) -> None:
    """``Broadcast("config/broadcast.py")`` publishes to a real soketi."""
    docs.config_file("pusher", pusher_options(docs.soketi))
    with docs.watcher("orders") as watcher:
        execute(b)
        events = watcher.received()
    assert [(e.channel, e.event, e.json()) for e in events] == [("orders", "shipped", {"id": 42})]


# -- docs/configuration.md -------------------------------------------------------------------

CONFIGURATION = "docs/configuration.md"


@runs(CONFIGURATION, "config")
def _configuration_config(b: Block, docs: Docs) -> None:
    """The file works as a path and as the imported module; no value shows; empty DRIVER fails."""
    for name, value in {
        **PUSHER_ENV,
        "PUSHER_SECRET": PUSHER_SECRET,
        "ABLY_SECRET": ABLY_SECRET,
    }.items():
        docs.monkeypatch.setenv(name, value)
    docs.monkeypatch.chdir(docs.tmp_path)
    module = docs.module_from(b)
    for source in ("config/broadcast.py", module):
        with Broadcast(source) as broadcast:
            pusher = broadcast.driver()
            assert pusher.name == "pusher"
            assert pusher.driver.settings.host == "api-eu.pusher.com"  # type: ignore[attr-defined]
            assert pusher.driver.settings.app_id == "1234567"  # type: ignore[attr-defined]
            ably = broadcast.driver("ably")
            assert ably.name == "ably"
            shown = repr(pusher) + repr(ably) + repr(broadcast.config)
            shown += repr(public(pusher.driver)) + repr(public(ably.driver))
            assert PUSHER_SECRET not in shown and ABLY_SECRET not in shown
    docs.monkeypatch.setenv("BROADCAST_DRIVER", "")  # set, but empty: an error, not a default
    with pytest.raises(ConfigurationError) as info:
        Broadcast("config/broadcast.py")
    assert info.value.key == "DRIVER"


def test_configuration_slips_are_errors_with_a_did_you_mean() -> None:
    """What docs/configuration.md says about slips and empty DRIVERs."""
    slips = types.ModuleType("slips")
    slips.driver = "pusher"  # type: ignore[attr-defined]
    for source, key, guess in (
        ({"driver": "pusher"}, "driver", "DRIVER"),
        (slips, "driver", "DRIVER"),
        ({"DRIVER": "memory", "DRIVER_S": {}}, "DRIVER_S", "DRIVERS"),
    ):
        with pytest.raises(ConfigurationError) as info:
            Broadcast(source)
        assert info.value.key == key
        assert f"did you mean {guess!r}?" in str(info.value)
    for empty in ("", None):
        with pytest.raises(ConfigurationError) as info:
            Broadcast({"DRIVER": empty})
        assert info.value.key == "DRIVER"


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_configuration_data_files(tmp_path: Path, suffix: str) -> None:
    """docs/configuration.md: a .toml or .json file holding DRIVER and DRIVERS works."""
    path = tmp_path / f"broadcast{suffix}"
    if suffix == ".toml":
        path.write_text('DRIVER = "memory"\n\n[DRIVERS.memory]\nmax_history = 5\n')
    else:
        path.write_text(json.dumps({"DRIVER": "memory", "DRIVERS": {"memory": {"max_history": 5}}}))
    if suffix == ".toml" and sys.version_info < (3, 11):  # what the page says happens there
        with pytest.raises(ConfigurationError, match=r"needs Python 3\.11\+"):
            Broadcast(path)
        return
    with Broadcast(path) as broadcast:
        assert broadcast.channel("orders", "hi").driver == "memory"


@runs(CONFIGURATION, "builtin-log")
def _configuration_builtin_log(b: Block, docs: Docs) -> None:
    """Logging not configured: the line the block's comment shows goes to stderr."""
    shown = re.search(r"stderr shows:\n# (.*)\n", b.code)
    assert shown, "the block should show the line it prints"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging.getLogger(), "handlers", [])  # pytest's own handlers
        docs.capsys.readouterr()
        close_all(execute(b))
        assert docs.capsys.readouterr().err == shown.group(1) + "\n"
    # with logging configured, it is an ordinary record at the configured level
    with docs.caplog.at_level(logging.DEBUG, "myapp.events"):
        close_all(execute(b))
    assert docs.capsys.readouterr().err == ""
    [record] = [r for r in docs.caplog.records if r.name == "myapp.events"]
    assert (record.levelno, record.getMessage()) == (
        logging.DEBUG,
        shown.group(1).split(": ", 1)[1],
    )


def test_configuration_documents_the_builtin_drivers_options() -> None:
    """The built-in drivers table names every option they accept, and only those."""
    text = (ROOT / CONFIGURATION).read_text(encoding="utf-8")
    section = text[text.index("## The built-in drivers") :]
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `(log|null|memory)` \| (.*?) \|", section, re.M)
    }
    documented = {name: set(re.findall(r"`([a-z_]+)` \(default", rows[name])) for name in rows}
    assert documented == {"log": {"logger", "level"}, "null": set(), "memory": {"max_history"}}
    for name, options in documented.items():
        for option in options:  # each is accepted (with a value of the documented kind)
            value = {"logger": "docs", "level": "DEBUG", "max_history": 3}[option]
            with Broadcast({"DRIVERS": {name: {option: value}}}) as broadcast:
                assert broadcast.driver(name).name == name
        with pytest.raises(ConfigurationError) as info:  # anything else is refused
            Broadcast({"DRIVERS": {name: {"colour": "blue"}}}).driver(name)
        assert info.value.key == "colour"
        with pytest.raises(ConfigurationError):  # and so are the delivery options
            Broadcast({"DRIVERS": {name: {"retries": 1}}}).driver(name)


# -- docs/publishing.md ----------------------------------------------------------------------

PUBLISHING = "docs/publishing.md"


@runs(PUBLISHING, "seed-usage")
def _publishing_seed_usage(b: Block, docs: Docs) -> None:
    """Masonite 1.4's calls, through a real soketi and the Ably emulator."""
    namespace = execute(b)
    config = {
        "DRIVER": "pusher",
        "DRIVERS": {
            "pusher": pusher_options(docs.soketi),
            "ably": docs.emulator.options(retry_backoff=0.01),
        },
    }
    with docs.watcher("channel_name", "channel1", "channel2") as watcher:
        with Broadcast(config) as broadcast:
            namespace["OrderController"]().show(broadcast)
        events = watcher.received()
    printed = docs.capsys.readouterr().out.splitlines()
    assert printed[0] == "<Broadcast driver='pusher'>"
    assert printed[1] == "<Broadcaster 'ably': BroadcastAblyDriver>"
    assert sorted((e.channel, e.event, e.data) for e in events) == sorted(
        [
            ("channel1", "base-event", '{"message":"hi"}'),
            ("channel2", "base-event", '{"message":"hi"}'),
            ("channel_name", "base-event", '{"message":"hello world"}'),
            ("channel_name", "base-event", "message"),
            ("channel_name", "subscribed", "message"),
        ]
    )
    stored = docs.emulator.messages("channel_name")
    assert [(m.name, m.data) for m in stored] == [("subscribed", "message")] * 2
    assert docs.emulator.violations == []


@runs(PUBLISHING, "fastapi")
def _publishing_fastapi(b: Block, docs: Docs) -> None:
    from fastapi.testclient import TestClient

    docs.config_file("pusher", pusher_options(docs.soketi))
    with docs.watcher("order-42") as watcher:
        namespace = execute(b)
        with TestClient(namespace["app"]) as client:  # runs the lifespan: the async with
            answer = client.post("/orders/42/ship")
        events = watcher.received()
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["message_id"]) == 16
    assert [(e.channel, e.event, e.json()) for e in events] == [
        ("order-42", "shipped", {"status": "shipped"})
    ]


@runs(PUBLISHING, "flask")
def _publishing_flask(b: Block, docs: Docs) -> None:
    docs.config_file("pusher", pusher_options(docs.soketi))
    with docs.watcher("order-7") as watcher:
        namespace = execute(b)
        try:
            client = namespace["app"].test_client()
            answer = client.post("/orders/7/ship")
        finally:
            close_all(namespace)
        events = watcher.received()
    assert answer.status_code == 200, answer.text
    assert len(answer.get_json()["message_id"]) == 16
    assert [(e.channel, e.event, e.json()) for e in events] == [
        ("order-7", "shipped", {"status": "shipped"})
    ]


@runs(PUBLISHING, "delivery")
def _publishing_delivery(b: Block, docs: Docs) -> None:
    """Real outcomes from the Ably emulator: one delivered, one refused, one unknown.

    The key may publish to ``allowed:*`` only, so Ably refuses ``denied``
    (40160: failed); the emulator stores ``allowed:c`` but leaves it out of
    its answer (unknown). ``retries: 0``: with Ably's default retries the core
    would re-send the unknown channel, which Ably de-duplicates, and it would
    end delivered.
    """
    emulator = docs.emulator
    options = emulator.options(key=LIMITED_KEY, retries=0)
    emulator.forget_channels_next(["allowed:c"])
    later: list[tuple[str, ...]] = []
    with Broadcast({"DRIVER": "ably", "DRIVERS": {"ably": options}}) as broadcast:
        namespace = {
            "broadcast": broadcast,
            "channels": ["allowed:a", "denied", "allowed:c"],
            "send_later": later.append,
            "log": logging.getLogger("app"),
        }
        with docs.caplog.at_level(logging.WARNING, "app"):
            execute(b, namespace)
    assert later == [("denied",)]
    [warning] = [r for r in docs.caplog.records if r.name == "app"]
    assert warning.getMessage().startswith("maybe delivered to ('allowed:c',): ")
    assert [len(emulator.messages(c)) for c in ("allowed:a", "denied", "allowed:c")] == [1, 0, 1]


def test_publishing_documents_the_delivery_options() -> None:
    """The delivery options table lists exactly the options the core reads, with its defaults."""
    from broadcasting.plugin import DELIVERY_OPTIONS, DeliveryOptions

    text = (ROOT / PUBLISHING).read_text(encoding="utf-8")
    section = text[text.index("### Delivery options") : text.index("## Errors")]
    rows = re.findall(r"^\| (`.*?`) \| (.*?) \|", section, re.M)
    documented = {}
    for names, defaults in rows:  # `retry_backoff`, `retry_max_backoff` | `0.1`, `2.0`
        pairs = zip(re.findall(r"`(\w+)`", names), re.findall(r"`([^`]+)`", defaults), strict=True)
        documented.update(pairs)
    assert set(documented) == set(DELIVERY_OPTIONS)
    real = DeliveryOptions()
    assert documented == {
        "retries": str(real.retry.retries),
        "retry_backoff": str(real.retry.backoff),
        "retry_max_backoff": str(real.retry.max_backoff),
        "at_least_once": str(real.at_least_once),
        "batch": str(real.batch),
        "batch_in_flight": str(real.batch_in_flight),
        "batch_linger": f"{real.batch_linger:g}",
    }


def test_the_guide_lists_the_delivery_options_the_core_strips() -> None:
    """writing-a-driver.md §5 names exactly what from_config never sees."""
    from broadcasting.plugin import DELIVERY_OPTIONS

    text = (ROOT / "docs" / "writing-a-driver.md").read_text(encoding="utf-8")
    section = text[text.index("## 5. Configuration") : text.index("## 6. ")]
    listed = section[section.index("**minus the") : section.index("which every network driver")]
    assert set(re.findall(r"`([a-z_]+)`", listed)) == set(DELIVERY_OPTIONS)


def test_publishing_lists_every_error_of_the_api() -> None:
    """Every exception class ``broadcasting`` exports is in the errors table."""
    import broadcasting

    text = (ROOT / PUBLISHING).read_text(encoding="utf-8")
    table = text[text.index("## Errors") :]
    exported = {
        name
        for name in broadcasting.__all__
        if isinstance(getattr(broadcasting, name), type)
        and issubclass(getattr(broadcasting, name), Exception)
    }
    missing = {name for name in exported if f"`{name}`" not in table}
    assert not missing, f"docs/publishing.md's errors table lacks {sorted(missing)}"


# -- docs/authorization.md -------------------------------------------------------------------


@runs("docs/authorization.md", "authorize")
def _authorization_authorize(b: Block, docs: Docs) -> None:
    namespace = execute(b)
    broadcast = namespace["broadcast"]
    memory = broadcast.driver("memory").driver
    assert memory.verify(namespace["body"], socket_id="1234.5678", channel="private-orders.42")
    assert memory.verify(namespace["member"], socket_id="1234.5678", channel="presence-chat.lobby")
    with pytest.raises(ForbiddenError):
        broadcast.authorize(
            {"id": 2, "name": "Bob", "orders": []},
            socket_id="1234.5678",
            channel_name="private-orders.42",
        )
    with pytest.raises(ForbiddenError):  # presence under a private rule: the wrong kind
        broadcast.authorize(
            namespace["ada"], socket_id="1234.5678", channel_name="presence-orders.42"
        )


# -- docs/hooks.md ---------------------------------------------------------------------------

HOOKS = "docs/hooks.md"


def _timing_lines(docs: Docs, broadcast: Broadcast) -> list[str]:
    with docs.caplog.at_level(logging.INFO, "myapp.broadcasting"):
        broadcast.channel(["a", "b"], {"id": 1}, "created")
        asyncio.run(broadcast.achannel("a", "text", "updated"))
    return [r.getMessage() for r in docs.caplog.records if r.name == "myapp.broadcasting"]


@runs(HOOKS, "timing-plugin")
def _hooks_timing_plugin(b: Block, docs: Docs) -> None:
    plugin = execute(b)["TimingPlugin"]()
    with Broadcast({"DRIVER": "memory"}, plugins=[plugin]) as broadcast:
        lines = _timing_lines(docs, broadcast)
    assert re.fullmatch(r"memory published 'created' to 2 channel\(s\) in [\d.]+ ms", lines[0])
    assert re.fullmatch(r"memory published 'updated' to 1 channel\(s\) in [\d.]+ ms", lines[1])


@runs(HOOKS, "timing-install")
def _hooks_timing_install(b: Block, docs: Docs) -> None:
    plugin_class = execute(block(HOOKS, "timing-plugin"))["TimingPlugin"]
    namespace = execute(b, {"TimingPlugin": plugin_class})
    with namespace["broadcast"] as broadcast:
        assert len(_timing_lines(docs, broadcast)) == 2


@runs(HOOKS, "wait-for")
def _hooks_wait_for(b: Block, docs: Docs) -> None:
    namespace = execute(b)
    audit, broadcast = namespace["audit"], namespace["broadcast"]
    asyncio.run(broadcast.achannel("orders", {"id": 1}, "updated"))
    assert audit.log == ["memory: created", "memory: updated"]


def _hook_reference(b: Block, docs: Docs, hook: str) -> None:
    """A hook's reference block defines exactly the real spec: flags, signature, summary."""
    namespace: dict[str, Any] = {"hookspec": hookspec}
    # compiled as under `from __future__ import annotations`, as hookspecs.py is:
    # both signatures then hold their annotations as the same strings
    exec(compiled(b, annotations.compiler_flag), namespace)
    shown = namespace[f"broadcasting_{hook}"]
    real = getattr(hookspecs, f"broadcasting_{hook}")
    assert shown.broadcasting_spec == real.broadcasting_spec
    assert inspect.signature(shown) == inspect.signature(real)
    assert shown.__doc__ == real.__doc__.split("\n")[0]


runs(HOOKS, "hook-connect")(lambda b, docs: _hook_reference(b, docs, "connect"))
runs(HOOKS, "hook-publish")(lambda b, docs: _hook_reference(b, docs, "publish"))
runs(HOOKS, "hook-authorize")(lambda b, docs: _hook_reference(b, docs, "authorize"))
runs(HOOKS, "hook-webhook")(lambda b, docs: _hook_reference(b, docs, "webhook"))
runs(HOOKS, "hook-transaction")(lambda b, docs: _hook_reference(b, docs, "transaction"))
runs(HOOKS, "hook-defer")(lambda b, docs: _hook_reference(b, docs, "defer"))


# -- docs/background.md ----------------------------------------------------------------------

BACKGROUND = "docs/background.md"


def _in_a_fresh_folder(b: Block, docs: Docs) -> None:
    """A block that makes its SQLite files in the working directory: run in the test's own."""
    docs.monkeypatch.chdir(docs.tmp_path)
    run_as_written(b, docs)


runs(BACKGROUND, "background-three-ways")(_in_a_fresh_folder)
runs(BACKGROUND, "outbox-sqlalchemy")(_in_a_fresh_folder)
runs(BACKGROUND, "relay-lifespan")(_in_a_fresh_folder)


def _run_with_real_workers(b: Block, docs: Docs) -> None:
    """The task-queue blocks need a broker and a worker: tests/queues/test_docs_snippets.py
    writes them to a project folder and runs them with real brokers, the worker commands
    the page gives and a real subscriber. Here: that module still takes this block."""
    source = (TESTS / "queues" / "test_docs_snippets.py").read_text(encoding="utf-8")
    assert f'"{b.name}"' in source, f"tests/queues/test_docs_snippets.py no longer runs {b.name}"


for _name in ("queues-celery", "queues-publish", "queues-rq", "queues-dramatiq"):
    runs(BACKGROUND, _name)(_run_with_real_workers)


@runs(BACKGROUND, "driver-of-its-own")
def _background_driver_of_its_own(b: Block, docs: Docs) -> None:
    """The config file registers its driver wherever it is loaded: a publish of that driver
    goes through the outbox and the relay (another Broadcast) sends it with its options,
    where a with_options() variant is refused."""
    from broadcasting import InputError
    from broadcasting.outbox import Relay

    docs.monkeypatch.chdir(docs.tmp_path)
    with Recorder() as server:
        host, port = server.server_address[:2]
        local = f'"host": {host!r}, "port": {port}, "ssl": False'
        code = b.code.replace('"cluster": "mt1"', local).replace('"cluster": "eu"', local)
        assert code.count(local) == 2
        path = docs.tmp_path / "config" / "broadcast.py"
        path.parent.mkdir()
        path.write_text(code + 'OUTBOX = {"url": "sqlite:///outbox.sqlite3"}\n', encoding="utf-8")
        try:
            with Broadcast(path) as app:  # the application's process
                variant = app.driver("pusher").with_options(app_id="7654321")
                with pytest.raises(InputError, match="with_options"):
                    variant.channel("orders", {"id": 1}, "shipped", send="outbox")
                receipt = app.driver("pusher_eu").channel(
                    "orders", {"id": 1}, "shipped", send="outbox"
                )
                assert (receipt.pending, receipt.driver) == (True, "pusher_eu")
            assert server.posts == []
            with Broadcast(path) as relayed:  # the relay's
                Relay(relayed).run_once()
        finally:
            unregister_driver("pusher_eu")
    [(url, _, body)] = server.posts
    assert url.startswith("/apps/7654321/events?auth_key=eu-key&")
    assert json.loads(body)["channels"] == ["orders"]


# -- docs/testing.md -------------------------------------------------------------------------

TESTING = "docs/testing.md"


@runs(TESTING, "pytest-async")
def _testing_pytest_async(b: Block, docs: Docs) -> None:
    """The block is a test file: pytest runs it with the real ``broadcast_fake`` fixture and
    pytest-asyncio in its default (strict) mode, and its test passes; the same file with the
    view publishing to another order fails on the fake's assertion."""
    folder = docs.tmp_path / "async_example"
    folder.mkdir()
    (folder / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (folder / "test_example.py").write_text(b.code, encoding="utf-8")
    wrong = b.code.replace('f"private-orders.{order_id}"', 'f"private-orders.{order_id + 1}"')
    assert wrong != b.code
    (folder / "test_wrong.py").write_text(wrong, encoding="utf-8")
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q"],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    outcomes = sorted(
        line.split(" - ")[0]
        for line in ran.stdout.splitlines()
        if line.startswith(("PASSED ", "FAILED ", "ERROR "))
    )
    assert outcomes == [
        "FAILED test_wrong.py::test_shipping_tells_the_customer",
        "PASSED test_example.py::test_shipping_tells_the_customer",
    ], ran.stdout + ran.stderr
    assert "AssertionError: no publish matched event='shipped'" in ran.stdout, ran.stdout


# -- docs/scaling.md -------------------------------------------------------------------------

SCALING = "docs/scaling.md"
_JSON_BLOCK = re.compile(
    r"<!-- snippet: ([\w-]+) -->\s*```json\n(.*?)^```", re.MULTILINE | re.DOTALL
)


def json_block(doc: str, name: str) -> dict[str, Any]:
    """The ```` ```json ```` block called ``name`` in ``doc``, parsed."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    found = [body for marker, body in _JSON_BLOCK.findall(text) if marker == name]
    assert len(found) == 1, f"{doc} should have exactly one json block named {name!r}"
    config: dict[str, Any] = json.loads(found[0])
    return config


@dataclass
class ScalingCluster:
    """soketi nodes started from docs/scaling.md's configuration."""

    config: dict[str, Any]  #: as the nodes run it
    nodes: list[SoketiServer]

    @property
    def app(self) -> dict[str, Any]:
        app: dict[str, Any] = self.config["appManager.array.apps"][0]
        return app

    def options(self, node: SoketiServer) -> dict[str, Any]:
        """``DRIVERS['pusher']`` for one node."""
        app = self.app
        return {
            "app_id": app["id"],
            "key": app["key"],
            "secret": app["secret"],
            "host": node.host,
            "port": node.port,
            "ssl": False,
        }

    def publish(self, node: SoketiServer, channel: str, data: str) -> None:
        with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": self.options(node)}}) as b:
            b.channel(channel, data, "marker")


def scaling_config(**changes: Any) -> dict[str, Any]:
    """docs/scaling.md's node configuration as written, but for the test Redis, a prefix of
    this run's own (parallel runs share that Redis) and ``changes``; no port (each node gets
    free ones)."""
    from soketi_cluster import REDIS_HOST, REDIS_PORT, redis_reachable
    from soketi_pytest import unavailable

    if not redis_reachable():
        unavailable("Redis", f"no Redis on {REDIS_HOST}:{REDIS_PORT} for the soketi cluster")
    config = json_block(SCALING, "soketi-node")
    del config["port"]
    config["adapter.redis.prefix"] += f"-{uuid.uuid4().hex[:8]}"
    config.update({"database.redis.host": REDIS_HOST, "database.redis.port": REDIS_PORT})
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def scaling_cluster() -> Iterator[ScalingCluster]:
    """Three nodes of docs/scaling.md's configuration."""
    config = scaling_config()
    nodes: list[SoketiServer] = []
    try:
        for _ in range(3):
            nodes.append(start_soketi(**config))
        yield ScalingCluster(config, nodes)
    finally:
        for node in nodes:
            node.close()


def heard_on_each_node(
    cluster: ScalingCluster,
    channel: str,
    publish: Callable[[], None],
    also: tuple[SoketiServer, ...] = (),
    apart: tuple[SoketiServer, ...] = (),
) -> list[list[Event]]:
    """What a WebSocket subscriber on each node (the cluster's, then ``also``, then ``apart``)
    received on ``channel`` of the events ``publish()`` sent: nothing missed, nothing still
    coming.

    After ``publish()`` a marker goes through every node of the cluster: a node's events reach
    every node in the order that node sent them, so a subscriber that has every marker has all
    that was published before them, whichever node it went through. ``also`` are nodes that
    should hear the cluster; ``apart``, nodes that should not: each gets a marker of its own
    after the cluster's markers arrived everywhere else."""
    nodes = [*cluster.nodes, *also, *apart]
    markers = [f"marker-{uuid.uuid4().hex}" for _ in cluster.nodes]
    own = [f"own-{uuid.uuid4().hex}" for _ in apart]

    async def until(heard: list[list[Event]], expected: list[set[str]]) -> None:
        for _ in range(400):  # up to 20 s
            pairs = zip(heard, expected, strict=True)
            if all({e.data for e in events} >= want for events, want in pairs):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the markers did not arrive: {heard}")

    async def run() -> list[list[Event]]:
        heard: list[list[Event]] = [[] for _ in nodes]
        subs = []
        try:
            for node, events in zip(nodes, heard, strict=True):
                url = node.ws_url(cluster.app["key"])
                subs.append(await PusherSubscriber(url, on_event=events.append).connect())
                await subs[-1].subscribe(channel)
            await asyncio.to_thread(publish)
            for node, marker in zip(cluster.nodes, markers, strict=True):
                await asyncio.to_thread(cluster.publish, node, channel, marker)
            hearing = len(cluster.nodes) + len(also)
            await until(heard[:hearing], [set(markers)] * hearing)
            for node, marker in zip(apart, own, strict=True):
                await asyncio.to_thread(cluster.publish, node, channel, marker)
            await until(heard[hearing:], [{marker} for marker in own])
        finally:
            for sub in subs:
                await sub.close()
        return [[e for e in events if e.data not in markers + own] for events in heard]

    return asyncio.run(run())


@pytest.mark.server
def test_scaling_the_node_configuration_makes_one_cluster(
    scaling_cluster: ScalingCluster,
) -> None:
    """docs/scaling.md's node configuration: a publish through any node reaches a subscriber on
    every node, once. A node on the same Redis with the same prefix but another database number
    hears it too; one with another prefix hears none of it (what the page says of the two)."""
    config = scaling_cluster.config
    other_db = {**config, "database.redis.db": config["database.redis.db"] + 5}
    other_prefix = scaling_config()
    extra: list[SoketiServer] = []
    try:
        extra.append(start_soketi(**other_db))
        extra.append(start_soketi(**other_prefix))
        channel = f"orders-{uuid.uuid4().hex[:6]}"

        def publish() -> None:
            for n, node in enumerate(scaling_cluster.nodes):
                scaling_cluster.publish(node, channel, f"through node {n}")

        heard = heard_on_each_node(
            scaling_cluster, channel, publish, also=(extra[0],), apart=(extra[1],)
        )
    finally:
        for node in extra:
            node.close()
    sent = [f"through node {n}" for n in range(3)]
    assert [sorted(e.data for e in events) for events in heard] == [sent] * 4 + [[]]


@runs(SCALING, "hosts")
def _scaling_hosts(b: Block, docs: Docs) -> None:
    """The file, with the environment naming the test cluster's nodes: publishes spread over
    the nodes reach a subscriber on every node once each; no secret shows."""
    cluster: ScalingCluster = docs.fixture("scaling_cluster")
    docs.monkeypatch.setenv("SOKETI_SECRET", cluster.app["secret"])
    nodes = ",".join(f"{node.host}:{node.port}" for node in cluster.nodes)
    docs.monkeypatch.setenv("SOKETI_NODES", nodes)
    module = docs.module_from(b)
    channel = f"orders-{uuid.uuid4().hex[:6]}"
    with Broadcast(module) as broadcast:
        driver = broadcast.driver().driver
        assert len(driver.settings.nodes) == 3  # type: ignore[attr-defined]
        assert cluster.app["secret"] not in repr(driver) + repr(public(driver))

        def publish() -> None:
            for n in range(6):
                broadcast.channel(channel, {"n": n}, "shipped")

        heard = heard_on_each_node(cluster, channel, publish)
    for events in heard:
        assert sorted(e.json()["n"] for e in events) == list(range(6))


@runs(SCALING, "busy")
def _scaling_busy(b: Block, docs: Docs) -> None:
    """The file, against the test cluster (whose nodes take the 20 events a request the node
    configuration gives them), each node behind a counting proxy: 40 async publishes at once
    go out 20 a request, none sent again alone, and every one reaches a subscriber on every
    node once."""
    cluster: ScalingCluster = docs.fixture("scaling_cluster")
    assert cluster.app["maxEventBatchSize"] == 20, "the node configuration takes 20 a request"
    docs.monkeypatch.setenv("SOKETI_SECRET", cluster.app["secret"])
    count = 40
    channel = f"orders-{uuid.uuid4().hex[:6]}"
    with ExitStack() as stack:
        proxies = [stack.enter_context(CountingProxy(node.port)) for node in cluster.nodes]
        docs.monkeypatch.setenv("SOKETI_NODES", ",".join(f"127.0.0.1:{p.port}" for p in proxies))
        module = docs.module_from(b)
        receipts: list[Receipt] = []

        async def publish_all() -> None:
            async with Broadcast(module) as broadcast:
                sent = (broadcast.achannel(channel, {"n": n}, "shipped") for n in range(count))
                receipts.extend(await asyncio.gather(*sent))

        heard = heard_on_each_node(cluster, channel, lambda: asyncio.run(publish_all()))
        sizes = [len(post.json()["batch"]) for proxy in proxies for post in proxy.posts()]
    assert [r.requests for r in receipts] == [1] * count, "a publish was refused and sent alone"
    # 20 a request (two, unless the loop stalled past the linger between the publishes)
    assert sum(sizes) == count and max(sizes) == 20, f"events per request: {sizes}"
    for events in heard:
        assert sorted(e.json()["n"] for e in events) == list(range(count))


# -- core/README.md --------------------------------------------------------------------------


@runs("core/README.md", "quickstart")
def _core_quickstart(b: Block, docs: Docs) -> None:
    close_all(execute(b))
    assert docs.capsys.readouterr().out.startswith("memory: 'shipped' -> orders (id ")


# -- docs/writing-a-driver.md ----------------------------------------------------------------

GUIDE = "docs/writing-a-driver.md"


@runs(GUIDE, "intro")
def _guide_intro(b: Block, docs: Docs) -> None:
    with docs.webhook_receiver() as receiver:
        close_all(execute(b, {"WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": WEBHOOK_SECRET}))
        events = receiver.events
    assert [(e["event"], e["channels"], e["data"]) for e in events] == [
        ("shipped", ["orders"], {"id": 42})
    ]


@runs(GUIDE, "acme-init")
def _guide_acme_init(b: Block, docs: Docs) -> None:
    package = docs.acme_package(b)
    assert package.__all__ == ["BroadcastAcmeDriver"]
    assert package.BroadcastAcmeDriver.name == "acme"


@runs(GUIDE, "acme-driver")
def _guide_acme_driver(b: Block, docs: Docs) -> None:
    """The package the guide builds, registered as it would be installed, against a real server."""
    package = docs.acme_package(block(GUIDE, "acme-init"))
    register_driver("acme", package.BroadcastAcmeDriver)
    try:
        with Recorder() as acme:
            options = {"api_key": ACME_KEY, "endpoint": acme.url}
            with Broadcast({"DRIVER": "acme", "DRIVERS": {"acme": options}}) as broadcast:
                receipt = broadcast.channel([f"c{n}" for n in range(150)], {"id": 1}, "created")
                driver = broadcast.driver()
                assert ACME_KEY not in repr(driver) + repr(public(driver.driver))
    finally:
        unregister_driver("acme")
    assert receipt.requests == 2
    assert sorted(len(json.loads(body)["channels"]) for _, _, body in acme.posts) == [50, 100]
    assert {(path, headers["Authorization"]) for path, headers, _ in acme.posts} == {
        ("/v1/events", f"Bearer {ACME_KEY}")
    }
    # installed with the guide's entry point, it passes the conformance kit (§12), which
    # also looks for the key in the frames of the tracebacks it raises
    assert ACME_ENTRY_POINT in (ROOT / GUIDE).read_text(encoding="utf-8")
    init = block(GUIDE, "acme-init").code
    assert_the_kit_passed(run_acme_conformance(docs.tmp_path / "kit", init, b.code), 90)


ACME_CONFTEST = '''
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from broadcasting.testing import Delivery, DeliveryRecorder

KEY = {key!r}


class AcmeServer(ThreadingHTTPServer):
    """Acme's POST /v1/events: records each channel, answers 200 (or drops the answer)."""

    daemon_threads = True

    def __init__(self, recorder, lose_answers=False):
        super().__init__(("127.0.0.1", 0), Handler)
        self.recorder = recorder
        self.lose_answers = lose_answers
        self.url = f"http://127.0.0.1:{{self.server_address[1]}}"
        self.thread = threading.Thread(
            target=self.serve_forever, kwargs={{"poll_interval": 0.05}}, daemon=True
        )
        self.thread.start()

    def stop(self):
        self.shutdown()
        self.thread.join()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/events" or self.headers["Authorization"] != f"Bearer {{KEY}}":
            self.send_response(401)
            self.end_headers()
            return
        for channel in body["channels"]:
            self.server.recorder.record(Delivery(channel, body["name"], body["data"]))
        if self.server.lose_answers:  # processed, and the answer never comes
            self.connection.close()
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{{}}")

    def log_message(self, format, *args):
        pass


@pytest.fixture
def recorder():
    return DeliveryRecorder()


@pytest.fixture
def server(recorder):
    acme = AcmeServer(recorder)
    yield acme
    acme.stop()


@pytest.fixture
def lossy_server(recorder):
    acme = AcmeServer(recorder, lose_answers=True)
    yield acme
    acme.stop()


@pytest.fixture
def closed_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{{sock.getsockname()[1]}}"
'''

ACME_CONFORMANCE = """
import pytest

from broadcasting.testing import DriverConformance
from conftest import KEY


class TestAcmeConformance(DriverConformance):
    driver_name = "acme"
    secrets = (KEY,)

    @pytest.fixture
    def driver_options(self, server):
        return {"api_key": KEY, "endpoint": server.url, "retry_backoff": 0.01}

    @pytest.fixture
    def observer(self, recorder):
        return recorder

    @pytest.fixture
    def failing_options(self, closed_url, lossy_server):
        return [
            {"api_key": KEY, "endpoint": closed_url, "retries": 0},  # connection refused
            {"api_key": KEY, "endpoint": lossy_server.url},  # processed, answer lost
        ]

    @pytest.fixture
    def unanswered_options(self, silent_server):
        endpoint = f"http://{silent_server.host}:{silent_server.port}"
        return {"api_key": KEY, "endpoint": endpoint, "timeout": 0.5}

    @pytest.fixture
    def invalid_options(self, server):
        return [
            ({"endpoint": server.url}, "api_key"),
            ({"api_key": KEY, "endpoint": "ftp://acme.example"}, "endpoint"),
            ({"api_key": KEY, "timeout": 0}, "timeout"),
        ]
"""

#: the guide's entry point (§3), as pyproject.toml declares it
ACME_ENTRY_POINT = 'acme = "broadcasting_acme:BroadcastAcmeDriver"'


def run_acme_conformance(folder: Path, init: str, driver: str) -> subprocess.CompletedProcess[str]:
    """The conformance kit, run by pytest in a child process, on the guide's package.

    The package is installed as pip would lay it out: its files, and a
    ``.dist-info`` with the guide's entry point, in a folder on the child's
    ``PYTHONPATH``.
    """
    site = folder / "site"
    package = site / "broadcasting_acme"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(init, encoding="utf-8")
    (package / "_driver.py").write_text(driver, encoding="utf-8")
    info = site / "broadcasting_acme-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broadcasting-acme\nVersion: 0.1.0\n", encoding="utf-8"
    )
    entry_point = ACME_ENTRY_POINT.replace('"', "")
    (info / "entry_points.txt").write_text(
        f"[broadcasting.drivers]\n{entry_point}\n", encoding="utf-8"
    )
    tests = folder / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text(ACME_CONFTEST.format(key=ACME_KEY), encoding="utf-8")
    (tests / "test_conformance.py").write_text(ACME_CONFORMANCE, encoding="utf-8")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=tests,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def assert_the_kit_passed(result: subprocess.CompletedProcess[str], at_least: int) -> None:
    """pytest ran the kit: at least ``at_least`` tests passed, none failed or skipped."""
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= at_least, summary
    assert "skipped" not in summary and "failed" not in summary, summary


LEGACY = '''"""A stand-in for the guide's older Acme API driver."""

from broadcasting_acme._driver import BroadcastAcmeDriver


class BroadcastAcmeV1Driver(BroadcastAcmeDriver):
    """Acme API version 1."""
'''


@runs(GUIDE, "acme-factory")
def _guide_acme_factory(b: Block, docs: Docs) -> None:
    package = docs.acme_package(b, legacy=LEGACY)
    assert package.broadcasting_connect("other", {}) is None
    register_driver("acme", package)
    try:
        for version, cls in (
            (1, "BroadcastAcmeV1Driver"),
            (2, "BroadcastAcmeDriver"),
            (None, "BroadcastAcmeDriver"),
        ):
            options: dict[str, Any] = {"api_key": ACME_KEY}
            if version is not None:
                options["api_version"] = version
            with Broadcast({"DRIVERS": {"acme": options}}) as broadcast:
                assert type(broadcast.driver("acme").driver).__name__ == cls
    finally:
        unregister_driver("acme")


class _Toggle(Driver):
    """An in-process driver with an ``ssl`` option, for the guide's toggle."""

    name = "toggle"

    def __init__(self, ssl: bool = True) -> None:
        self.ssl_enabled = ssl

    @classmethod
    def from_config(cls, options: Any) -> _Toggle:
        unknown = set(options) - {"ssl"}
        if unknown:
            raise ConfigurationError(cls.name, sorted(unknown)[0], "unknown option")
        return cls(ssl=options.get("ssl", True))

    def publish(self, message: Message) -> Receipt:
        return Receipt(self.name, message.event, message.channels, message.id)


@runs(GUIDE, "ssl-toggle")
def _guide_ssl_toggle(b: Block, docs: Docs) -> None:
    """``ssl_option`` declared: the broadcaster's ssl() is a variant built with that option."""
    toggled = type("Toggled", (_Toggle,), class_body(b, {}))
    register_driver("toggle", toggled)
    try:
        with Broadcast({"DRIVER": "toggle"}) as broadcast:
            broadcaster = broadcast.driver()
            plain = broadcaster.ssl(False)
            assert (broadcaster.driver.ssl_enabled, plain.driver.ssl_enabled) == (True, False)
            assert broadcaster.ssl(False) is plain  # a cached variant
            assert plain.channel("orders", "hi").driver == "toggle"
    finally:
        unregister_driver("toggle")
    register_driver("toggle", _Toggle)  # without the declaration, ssl() is refused
    try:
        with Broadcast({"DRIVER": "toggle"}) as broadcast, pytest.raises(NotSupportedError):
            broadcast.driver().ssl(False)
    finally:
        unregister_driver("toggle")


@runs(GUIDE, "from-config")
def _guide_from_config(b: Block, docs: Docs) -> None:
    package = docs.acme_package(block(GUIDE, "acme-init"))
    module = sys.modules["broadcasting_acme._driver"]
    body = class_body(b, dict(vars(module)))
    cls = type("ShortAcme", (package.BroadcastAcmeDriver,), body)
    register_driver("acme", cls)
    try:
        with Broadcast({"DRIVERS": {"acme": {"api_key": ACME_KEY}}}) as broadcast:
            assert isinstance(broadcast.driver("acme").driver, cls)
        for options, keys in (
            ({}, ["api_key"]),
            ({"api_key": ACME_KEY, "region": "eu"}, ["region"]),
            ({"region": "eu", "zone": "a"}, ["region", "zone", "api_key"]),  # all at once
        ):
            with pytest.raises(ConfigurationError) as info:
                Broadcast({"DRIVERS": {"acme": options}}).driver("acme")
            assert [p.key for p in info.value.problems] == keys
            assert info.value.key == keys[0]
            assert all(repr(key) in str(info.value) for key in keys), str(info.value)
    finally:
        unregister_driver("acme")


@runs(GUIDE, "limits")
def _guide_limits(b: Block, docs: Docs) -> None:
    body = class_body(b, {"Limits": Limits, "re": re})
    limited = type("Limited", (BroadcastNullDriver,), {"name": "limited", **body})
    register_driver("limited", limited)
    try:
        with Broadcast({"DRIVER": "limited"}) as broadcast:
            assert broadcast.channel("c" * 164, "x" * 10_240, "e" * 200).driver == "limited"
            with pytest.raises(InvalidChannelError, match=re.escape("letters, digits and _-=@,.;")):
                broadcast.channel("orders!", "hi")
            with pytest.raises(InvalidChannelError):
                broadcast.channel("c" * 165, "hi")
            with pytest.raises(InvalidEventError):
                broadcast.channel("orders", "hi", "e" * 201)
            with pytest.raises(PayloadTooLargeError):
                broadcast.channel("orders", "é" * 5_121)  # 10,242 bytes in 5,121 characters
    finally:
        unregister_driver("limited")


class _Requests(Driver):
    """Acknowledges every request and records the channels of each."""

    name = "requests"

    def __init__(self) -> None:
        self.sent: list[tuple[str, ...]] = []
        self.specs: list[list[dict[str, Any]]] = []

    def send(self, batch: Batch) -> Any:
        self.sent.append(batch.channels)

    # what the guide's batching send() calls
    def _post_batch(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.specs.append(specs)
        return [{"channels": spec["channels"]} for spec in specs]

    def _answer(self, result: dict[str, Any]) -> Answer:
        return Answer()


@runs(GUIDE, "capabilities")
def _guide_capabilities(b: Block, docs: Docs) -> None:
    """§7: with 100 channels per request declared, 250 channels are three requests."""
    cls = type("Declared", (_Requests,), class_body(b, {"Capabilities": Capabilities}))
    register_driver("requests", cls)
    try:
        with Broadcast({"DRIVER": "requests"}) as broadcast:
            receipt = broadcast.channel([f"c{n}" for n in range(250)], "hi")
            driver = broadcast.driver().driver
    finally:
        unregister_driver("requests")
    assert receipt.requests == 3
    assert sorted(len(group) for group in driver.sent) == [50, 100, 100]  # type: ignore[attr-defined]


@runs(GUIDE, "batching")
def _guide_batching(b: Block, docs: Docs) -> None:
    """§8: concurrent async publishes share requests; a lone sync publish is a one-part batch."""
    names = {
        "Capabilities": Capabilities,
        "Batch": Batch,
        "Answer": Answer,
        "PublishError": PublishError,
    }
    cls = type("Batching", (_Requests,), class_body(b, names))
    register_driver("requests", cls)
    try:
        config = {"DRIVER": "requests", "DRIVERS": {"requests": {"batch_in_flight": 1}}}
        with Broadcast(config) as broadcast:

            async def many() -> list[Receipt]:
                publishes = (broadcast.achannel(f"c{n}", {"n": n}) for n in range(20))
                return list(await asyncio.gather(*publishes))

            receipts = asyncio.run(many())
            driver: Any = broadcast.driver().driver
            shared = list(driver.specs)
            alone = broadcast.channel("alone", "hi")
    finally:
        unregister_driver("requests")
    assert sorted(c for spec in (s for r in shared for s in r) for c in spec["channels"]) == sorted(
        f"c{n}" for n in range(20)
    )
    assert len(shared) < 20 and max(len(request) for request in shared) > 1
    assert {r.message_id for r in receipts} == {s["id"] for r in shared for s in r}
    assert driver.specs[-1] == [  # a lone publish: a one-part batch
        {"id": alone.message_id, "name": "base-event", "channels": ["alone"], "data": "hi"}
    ]


@runs(GUIDE, "perloop")
def _guide_perloop(b: Block, docs: Docs) -> None:
    """§11: one session per loop, closed when its loop ends; two asyncio.run calls both work."""
    cls = execute(b)["BroadcastAcmeDriver"]
    sessions: list[Any] = []

    with Recorder() as acme:

        class Local(cls):  # type: ignore[misc,valid-type]
            @classmethod
            def from_config(cls, options: Any) -> Local:
                return cls(endpoint=acme.url)

            async def asend(self, batch: Batch) -> None:
                sessions.append(self._sessions.get())
                await super().asend(batch)

        register_driver("acme", Local)
        try:
            with Broadcast({"DRIVER": "acme"}) as broadcast:
                for _ in range(2):
                    asyncio.run(broadcast.achannel(["a", "b"], {"id": 1}))
        finally:
            unregister_driver("acme")
    assert len(acme.posts) == 2
    assert {path for path, _, _ in acme.posts} == {"/v1/events"}
    assert [json.loads(body)["channels"] for _, _, body in acme.posts] == [["a", "b"]] * 2
    assert len(sessions) == 2 and sessions[0] is not sessions[1]
    assert all(session.closed for session in sessions)


_conformance_run: dict[str, subprocess.CompletedProcess[str]] = {}


def _run_guide_conformance(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The guide's shortened conftest.py and test_conformance.py, run by pytest as files."""
    if "result" not in _conformance_run:
        folder = tmp_path / "guide-tests"
        folder.mkdir()
        (folder / "conftest.py").write_text(block(GUIDE, "webhook-conftest").code)
        (folder / "test_conformance.py").write_text(block(GUIDE, "webhook-conformance").code)
        _conformance_run["result"] = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    return _conformance_run["result"]


@runs(GUIDE, "webhook-conftest")
@runs(GUIDE, "webhook-conformance")
def _guide_webhook_tests(b: Block, docs: Docs) -> None:
    assert_the_kit_passed(_run_guide_conformance(docs.tmp_path), 40)


@runs(GUIDE, "pusher-observer")
def _guide_pusher_observer(b: Block, docs: Docs) -> None:
    """The outline runs, and the real observer has these methods, asking for no more."""
    observer = execute(b)["PusherObserver"]
    shown = {
        name: list(inspect.signature(fn).parameters)
        for name, fn in vars(observer).items()
        if inspect.isfunction(fn)
    }
    tree = ast.parse((TESTS / "pusher" / "test_conformance.py").read_text(encoding="utf-8"))
    [real] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PusherObserver"]
    actual = {
        node.name: [a.arg for a in node.args.args]
        for node in real.body
        if isinstance(node, ast.FunctionDef)
    }
    assert shown == {name: actual[name] for name in shown}
    outline = observer.__new__(observer)
    outline._subscriber = types.SimpleNamespace(socket_id="123.456")
    assert outline.socket_id() == "123.456"


@runs(GUIDE, "register-driver")
def _guide_register_driver(b: Block, docs: Docs) -> None:
    receipt = execute(b)["receipt"]
    assert (receipt.driver, receipt.event, receipt.channels) == ("print", "created", ("orders",))
    assert docs.capsys.readouterr().out == 'created -> orders: {"id":1}\n'


@runs(GUIDE, "cli-config")
def _guide_cli_config(b: Block, docs: Docs) -> None:
    """The file given to --config builds the guide's driver, and `broadcasting send` publishes."""
    from broadcasting.cli import main

    package = docs.acme_package(block(GUIDE, "acme-init"))
    docs.monkeypatch.setenv("ACME_API_KEY", ACME_KEY)
    register_driver("acme", package.BroadcastAcmeDriver)
    try:
        with Recorder() as acme:
            path = docs.tmp_path / "broadcast.py"
            path.write_text(b.code.replace("http://127.0.0.1:8080", acme.url), encoding="utf-8")
            with Broadcast(path) as broadcast:
                driver = broadcast.driver()
                assert (driver.name, driver.delivery.retry.retries) == ("acme", 0)
                assert ACME_KEY not in repr(driver) + repr(public(driver.driver))
            args = ["send", '{"id": 1}', "--channel", "orders", "--event", "created"]
            assert main([*args, "--config", str(path)]) == 0
    finally:
        unregister_driver("acme")
    [(url, headers, body)] = acme.posts
    assert (url, headers["Authorization"]) == ("/v1/events", f"Bearer {ACME_KEY}")
    assert json.loads(body)["channels"] == ["orders"]


def test_django_shows_the_relay_command_as_it_is() -> None:
    """docs/django.md's ``manage.py broadcasting_relay`` lines parse with the command's own
    parser, the options it names are the command's, and it links to the services."""
    pytest.importorskip("django")
    from broadcasting.contrib.django.management.commands.broadcasting_relay import Command

    text = (ROOT / "docs" / "django.md").read_text(encoding="utf-8")
    shell = "".join(re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M))
    lines = [line.split() for line in shell.splitlines() if "manage.py broadcasting_relay" in line]
    assert len(lines) >= 3, lines
    parser = Command().create_parser("manage.py", "broadcasting_relay")
    for argv in lines:
        assert argv[:3] == ["python", "manage.py", "broadcasting_relay"], argv
        parser.parse_args(argv[3:])  # CommandError for an option it does not have
    section = text[text.index("### `manage.py broadcasting_relay`") :]
    section = section[: section.index("\n#")]
    named = set(re.findall(r"`(--[a-z-]+)", section))
    own = {o for action in parser._actions for o in action.option_strings if o.startswith("--")}
    assert named == {"--once", "--stats", "--json", "--owner"} and named <= own, named
    for anchor in ("background.md#running-it-systemd", "background.md#running-it-kubernetes"):
        assert anchor in section, anchor


def test_the_guide_drivers_import_only_the_plugin_api() -> None:
    """A driver written from the guide imports from ``broadcasting.plugin``, not the app API."""
    imports_of_driver_blocks = []
    for b in BLOCKS:
        if b.doc != GUIDE or "(Driver)" not in b.code:
            continue
        tree = ast.parse(b.code)
        app_names = [
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "broadcasting"
            for alias in node.names
        ]
        # a block may also be an application using the driver it defines
        allowed = {"Broadcast"} if "Broadcast(" in b.code else set()
        assert set(app_names) <= allowed, f"{b.id} imports {app_names} from broadcasting"
        private = [
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and (node.module or "").startswith("broadcasting.")
            and node.module not in ("broadcasting.plugin", "broadcasting.testing")
        ]
        assert not private, f"{b.id} imports {private}"
        imports_of_driver_blocks.append(b.id)
    assert len(imports_of_driver_blocks) >= 4


# -- plugins/pusher_driver/README.md ---------------------------------------------------------

PUSHER_README = "plugins/pusher_driver/README.md"


@runs(PUSHER_README, "config")
def _pusher_config(b: Block, docs: Docs) -> None:
    for name, value in {**PUSHER_ENV, "PUSHER_SECRET": PUSHER_SECRET}.items():
        docs.monkeypatch.setenv(name, value)
    with Broadcast(docs.module_from(b)) as broadcast:
        driver = broadcast.driver().driver
        assert (driver.name, driver.settings.host) == ("pusher", "api-eu.pusher.com")  # type: ignore[attr-defined]
        assert PUSHER_SECRET not in repr(driver) + repr(public(driver))


@runs(PUSHER_README, "usage")
def _pusher_usage(b: Block, docs: Docs) -> None:
    """Through a counting proxy in front of soketi: what arrives, and in how many requests."""
    channels = ("orders", "local", "room", "user-0", "user-999")
    with CountingProxy(docs.soketi.port) as proxy, docs.watcher(*channels) as watcher:
        config = {
            "DRIVER": "pusher",
            "DRIVERS": {"pusher": pusher_options(docs.soketi, port=proxy.port)},
        }
        close_all(execute(b, {"config": config}))
        events = watcher.received()
        posts = proxy.posts()
    assert sorted((e.channel, e.event, e.data) for e in events) == sorted(
        [
            ("local", "base-event", "plain HTTP"),
            ("orders", "base-event", "async too"),
            ("orders", "shipped", '{"id":42}'),
            ("room", "said", "not to myself"),  # another connection's socket_id: still ours
            ("user-0", "base-event", "hello"),
            ("user-999", "base-event", "hello"),
        ]
    )
    assert sum(b"user-" in post.body for post in posts) == 10  # "10 requests, not 1,000"
    assert len(posts) == 14


# -- plugins/ably_driver/README.md -----------------------------------------------------------

ABLY_README = "plugins/ably_driver/README.md"


@runs(ABLY_README, "config")
def _ably_config(b: Block, docs: Docs) -> None:
    docs.monkeypatch.setenv("ABLY_SECRET", ABLY_SECRET)
    with Broadcast(docs.module_from(b)) as broadcast:
        driver = broadcast.driver().driver
        assert driver.name == "ably"
        assert ABLY_SECRET not in repr(driver) + repr(public(driver))


@runs(ABLY_README, "usage")
def _ably_usage(b: Block, docs: Docs) -> None:
    emulator = docs.emulator
    docs.config_file("ably", emulator.options(retry_backoff=0.01))
    close_all(execute(b))
    assert [(m.name, m.data) for m in emulator.messages("channel_name")] == [
        ("base-event", {"message": "hello world"}),
        ("subscribed", "message"),
        ("base-event", "message"),
    ]
    for channel in ("channel1", "channel2"):
        assert [(m.name, m.data) for m in emulator.messages(channel)] == [("subscribed", "message")]
    assert emulator.violations == []


@runs(ABLY_README, "state")
def _ably_state(b: Block, docs: Docs) -> None:
    emulator = docs.emulator
    namespace = execute(b)
    emulator.enter_presence("presence:chat.1", "7", {"id": "7", "name": "Alice"})
    emulator.set_occupancy("presence:chat.1", connections=1, subscribers=1)
    emulator.set_occupancy("presence:chat.2", connections=0)
    with Broadcast({"DRIVER": "ably", "DRIVERS": {"ably": emulator.options()}}) as broadcast:
        assert namespace["who_is_in"](broadcast, "1") == ["7"]
        assert namespace["busy_rooms"](broadcast) == {"presence:chat.1": 1}
    assert emulator.violations == []


# -- examples/webhook/README.md --------------------------------------------------------------

WEBHOOK_README = "examples/webhook/README.md"


@runs(WEBHOOK_README, "config")
def _webhook_config(b: Block, docs: Docs) -> None:
    docs.monkeypatch.setenv("BROADCAST_WEBHOOK_SECRET", WEBHOOK_SECRET)
    with Broadcast(docs.module_from(b)) as broadcast:
        driver = broadcast.driver().driver
        assert driver.name == "webhook"
        shown = repr(driver) + repr(public(driver))
        assert WEBHOOK_SECRET not in shown and "/hooks/broadcasting" not in shown


@runs(WEBHOOK_README, "usage")
def _webhook_usage(b: Block, docs: Docs) -> None:
    with docs.webhook_receiver() as receiver:
        docs.config_file("webhook", {"url": receiver.url, "secret": WEBHOOK_SECRET})
        close_all(execute(b))
        events = receiver.events
    assert [(e["event"], e["channels"], e["data"]) for e in events] == [
        ("order.shipped", ["orders"], {"id": 42, "status": "shipped"}),
        ("base-event", ["orders", "audit"], "plain text works too"),
    ]


@runs(WEBHOOK_README, "verify")
def _webhook_verify(b: Block, docs: Docs) -> None:
    """The Flask receiver, served for real, gets the driver's requests; a forged one gets 401."""
    from werkzeug.serving import make_server

    docs.monkeypatch.setenv("BROADCAST_WEBHOOK_SECRET", WEBHOOK_SECRET)
    app = execute(b)["app"]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.port}/hooks/broadcasting"
        config = {
            "DRIVER": "webhook",
            "DRIVERS": {"webhook": {"url": url, "secret": WEBHOOK_SECRET}},
        }
        with Broadcast(config) as broadcast:
            receipt = broadcast.channel("orders", {"id": 42}, "order.shipped")
            with pytest.raises(PublishError) as info:  # the wrong secret: refused, certainly
                broadcast.driver().with_options(secret="not-the-secret-0000").channel("orders", "x")
    finally:
        server.shutdown()
        thread.join(5)
    assert receipt.requests == 1
    assert (info.value.status, info.value.failed) == (401, ("orders",))
    assert docs.capsys.readouterr().out == "order.shipped ['orders'] {'id': 42}\n"
    forged = app.test_client().post(
        "/hooks/broadcasting",
        data=b'{"event": "x"}',
        headers={"X-Broadcasting-Timestamp": "1", "X-Broadcasting-Signature": "sha256=00"},
    )
    assert forged.status_code == 401


# -- figures quoted from the benchmarks ------------------------------------------------------

LATEST = ROOT / "benchmarks" / "results" / "latest.md"
_BENCH = re.compile(r"<!-- bench: ([^>]*?) -->(.*?)(?:\n[ \t]*\n|\Z)", re.DOTALL)
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def bench_rows() -> dict[str, str]:
    """Each benchmark row of latest.md, by its key in latest.json."""
    data = json.loads(LATEST.with_suffix(".json").read_text(encoding="utf-8"))
    cells = [
        line.split(" | ")
        for line in LATEST.read_text(encoding="utf-8").splitlines()
        if line.startswith("| ") and line.count(" | ") >= 3
    ]
    rows = {}
    for row in data["rows"]:
        matching = [" | ".join(c) for c in cells if c[1].startswith(row["what"])]
        assert len(matching) == 1, f"{row['key']}: {len(matching)} rows of latest.md match"
        rows[row["key"]] = matching[0]
    return rows


def figure_problems(text: str, rows: dict[str, str]) -> list[str]:
    """What the ``<!-- bench: KEY ... -->`` quotes of ``text`` say that those rows do not."""
    problems = []
    for match in _BENCH.finditer(text):
        keys, quote = match.group(1).split(), match.group(2)
        unknown = [key for key in keys if key not in rows]
        if unknown:
            problems.append(f"no benchmark rows {unknown}")
            continue
        shown = set(_NUMBER.findall(" ".join(rows[key] for key in keys)))
        quoted = _NUMBER.findall(quote)
        if not quoted:
            problems.append(f"no figure after the marker for {keys}")
        missing = sorted(set(quoted) - shown)
        if missing:
            problems.append(f"{missing} are not in rows {keys}: {' '.join(quote.split())!r}")
    return problems


BENCHMARKS = ROOT / "docs" / "benchmarks.md"
AUTH_RESULTS = ROOT / "benchmarks" / "results" / "auth.md"
#: Words that judge a figure against a goal: the page gives figures, not verdicts.
_JUDGING = re.compile(r"target|the issue|\bmet\b", re.IGNORECASE)


def _figure(stats: dict[str, Any]) -> str:
    """``median [min-max] unit``, in the benchmarks' own number format (as in latest.md)."""
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.append(str(ROOT / "benchmarks"))
    from _harness import fmt

    return f"{fmt(stats['median'])} [{fmt(stats['min'])}-{fmt(stats['max'])}] {stats['unit']}"


def latest_tables() -> str:
    """The tables of benchmarks/results/latest.json, as docs/benchmarks.md shows them."""
    data = json.loads(LATEST.with_suffix(".json").read_text(encoding="utf-8"))
    info, settings = data["machine"], data["settings"]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    lines = [
        f"Run {info['date']} on {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, "
        f"{info['os']}, {info['python_impl']} {info['python']}"
        + (f", Node {info['node']}" if info.get("node") else "")
        + f"; {settings['reps']} repetitions after {settings['warmup']} warm-up "
        f"(`python benchmarks/run.py`, {settings['mode']} mode).",
        "",
        f"Packages: {versions}.",
    ]
    section = None
    for row in data["rows"]:
        if row["section"] != section:
            section = row["section"]
            lines += ["", f"#### {section}", "", "| Workload | Ours | Baseline | Ratio |"]
            lines.append("|---|---|---|---|")
        what = row["what"]
        if row["note"] and not _JUDGING.search(row["note"]):
            what += f" — {row['note']}"
        ours = _figure(row["ours"]) if row["ours"] else "—"
        base = f"{_figure(row['baseline'])} ({row['baseline_name']})" if row["baseline"] else "—"
        ratio = "—"
        if row["ratio"] is not None:
            ratio = f"**{row['ratio']:.2f}x**"
            if row["ratio_spread"]:
                ratio += f" [{row['ratio_spread'][0]:.2f}-{row['ratio_spread'][1]:.2f}]"
        lines.append(f"| {what} | {ours} | {base} | {ratio} |")
    return "\n".join(lines) + "\n"


def auth_tables() -> str:
    """benchmarks/results/auth.md's run and table, without its verdict columns."""
    text = AUTH_RESULTS.read_text(encoding="utf-8")
    run = next(line for line in text.splitlines() if line.startswith("Run "))
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    keep = [i for i, cell in enumerate(header) if cell not in ("Target", "Met?")]
    lines = [run, ""]
    for line in rows:
        cells = line.strip().removeprefix("|").removesuffix("|").split(" | ")
        kept = [cells[i].strip() for i in keep]
        lines.append("| " + " | ".join(kept) + " |")
    lines.insert(3, "|" + "---|" * len(keep))  # the separator row
    return "\n".join(lines) + "\n"


def _generated(text: str, name: str) -> str:
    return text.split(f"<!-- {name}:start -->\n", 1)[1].split(f"<!-- {name}:end -->", 1)[0]


def write_benchmark_tables() -> None:
    """Put the latest results into docs/benchmarks.md (``python tests/test_docs.py``)."""
    text = BENCHMARKS.read_text(encoding="utf-8")
    for name, table in (("bench", latest_tables()), ("auth", auth_tables())):
        start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
        before, rest = text.split(start, 1)
        text = before + start + table + end + rest.split(end, 1)[1]
    BENCHMARKS.write_text(text, encoding="utf-8")


def test_the_benchmarks_page_shows_the_latest_results() -> None:
    """docs/benchmarks.md holds the tables of the latest runs, and no verdicts."""
    text = BENCHMARKS.read_text(encoding="utf-8")
    stale = "; run `python tests/test_docs.py` to update it"
    assert _generated(text, "bench") == latest_tables(), "latest.json changed" + stale
    assert _generated(text, "auth") == auth_tables(), "auth.md changed" + stale
    assert not _JUDGING.search(text), _JUDGING.search(text)
    assert "**NO**" not in text and "**yes**" not in text


def test_quoted_figures_are_those_of_the_latest_benchmark_run() -> None:
    rows = bench_rows()
    quoting = set()
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        problems = figure_problems(text, rows)
        assert not problems, f"{doc.relative_to(ROOT).as_posix()}: {problems}"
        if _BENCH.search(text):
            quoting.add(doc.relative_to(ROOT).as_posix())
    assert quoting >= {"docs/benchmarks.md", PUSHER_README, ABLY_README}


def test_a_figure_that_is_not_in_its_row_is_caught() -> None:
    rows = bench_rows()
    drifted = "<!-- bench: pusher.sync -->\nabout 1,234.5 publishes/s\n\nmore"
    [problem] = figure_problems(drifted, rows)
    assert "['1,234.5']" in problem
    assert figure_problems("<!-- bench: no.such.row -->\n1 ms\n", rows) == [
        "no benchmark rows ['no.such.row']"
    ]


# -- install lines ---------------------------------------------------------------------------

_LOCAL = re.compile(r"pip install ((?:(?:-e )?\.{1,2}/[^\s#`]+\s*)+)")
_PYPI = re.compile(r"pip install ((?:broadcasting[\w-]*\s*)+)")
_NAME = re.compile(r'^name = "([^"]+)"', re.MULTILINE)
READMES = [doc for doc in DOCS if doc.name == "README.md"]


def _project_names() -> set[str]:
    names = set()
    for pyproject in ROOT.glob("*/**/pyproject.toml"):
        if "node_modules" not in pyproject.parts:
            found = _NAME.search(pyproject.read_text(encoding="utf-8"))
            assert found, pyproject
            names.add(found.group(1))
    return names


def test_install_lines_name_packages_of_this_checkout() -> None:
    """``pip install ./x`` names a package folder; each PyPI name is one built here."""
    names = _project_names()
    assert {"broadcasting", "broadcasting-pusher", "broadcasting-ably"} <= names
    local = pypi = 0
    for doc in DOCS:
        for line in doc.read_text(encoding="utf-8").splitlines():
            for match in _LOCAL.finditer(line):
                for token in match.group(1).replace("-e ", "").split():
                    base = ROOT if token.startswith("./") else doc.parent
                    folder = (base / token).resolve()
                    assert (folder / "pyproject.toml").is_file(), f"{doc.name}: {line.strip()}"
                    local += 1
            if doc not in READMES:
                continue  # the guide names a made-up third-party package
            for match in _PYPI.finditer(line):
                for name in match.group(1).split():
                    assert name in names, f"{doc.name}: {name} is not a package of this repository"
                    pypi += 1
    assert local >= 5 and pypi >= 5
    for doc in READMES:
        assert _LOCAL.search(doc.read_text(encoding="utf-8")), (
            f"{doc}: no install line for a checkout"
        )


if __name__ == "__main__":
    write_benchmark_tables()


def _headings(document: Path) -> set[str]:
    """The anchors of ``document``'s headings, as GitHub and MkDocs make them (lower case,
    punctuation dropped, spaces as hyphens); headings inside code blocks are not headings."""
    text = re.sub(r"^```.*?^```", "", document.read_text(encoding="utf-8"), flags=re.S | re.M)
    found = set()
    for title in re.findall(r"^#{1,6} +(.+?) *$", text, re.M):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link: its text
        found.add(re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-"))
    return found


def dead_anchors(source: Path, text: str) -> list[str]:
    """The ``doc#anchor`` references of ``text`` (from the file ``source``) whose document
    has no such heading: ``docs/NAME.md#anchor`` in Python source (from the repository's
    root), Markdown links ``](path.md#anchor)`` and ``](#anchor)`` (from ``source``'s
    folder) in Markdown."""
    if source.suffix == ".py":
        cited = [
            (ROOT / doc, anchor) for doc, anchor in re.findall(r"(docs/[\w/]+\.md)#([\w-]+)", text)
        ]
    else:
        text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
        cited = [
            ((source.parent / path) if path else source, anchor)
            for path, anchor in re.findall(r"\]\(([^)\s#:]*)#([\w-]+)\)", text)
        ]
    return [
        f"{source.relative_to(ROOT)}: {doc.resolve().relative_to(ROOT)}#{anchor}"
        for doc, anchor in cited
        if doc.suffix == ".md" and (not doc.is_file() or anchor not in _headings(doc))
    ]


def test_every_anchor_the_code_and_docs_cite_is_a_heading() -> None:
    """A docstring or a page that sends the reader to ``page.md#section`` sends them to a
    section that exists (it found seven docstrings citing sections of docs/background.md
    by names they no longer had)."""
    listed = subprocess.run(
        ["git", "ls-files", "*.md", "core/*.py", "plugins/*.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(listed) > 50
    dead = [d for name in listed for d in dead_anchors(ROOT / name, (ROOT / name).read_text())]
    assert dead == []


def test_a_dead_anchor_is_caught() -> None:
    module = ROOT / "core" / "src" / "broadcasting" / "x.py"
    assert dead_anchors(module, '"""See docs/background.md#order."""') == []
    assert dead_anchors(module, '"""See docs/background.md#no-such-part."""') == [
        "core/src/broadcasting/x.py: docs/background.md#no-such-part"
    ]
    page = ROOT / "docs" / "x.md"
    links = "[a](background.md#order) [b](#nowhere) [c](missing.md#x) [d](https://e.org/#f)"
    assert dead_anchors(page, links) == [
        "docs/x.md: docs/x.md#nowhere",
        "docs/x.md: docs/missing.md#x",
    ]
