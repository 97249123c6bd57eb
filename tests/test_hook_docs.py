"""Every hook specification is documented with its current signature, and tested.

The rules, checked for each spec in :mod:`broadcasting.hookspecs`:

- documented: ``docs/writing-a-driver.md`` (or ``docs/hooks.md``) contains, in
  a python block, the spec's decorator and ``def`` line exactly as the code
  has them now (argument names, annotations, return type, ``firstresult``);
  and no python block there defines a hook that does not exist or uses an
  argument the spec does not have.
- tested: some test module (``tests/`` or ``examples/*/tests/``) has a test
  named ``test_hook_<hook name>``, and the same module pins the current
  arguments: it implements the hook with exactly the spec's argument names,
  or calls it with exactly those keyword arguments.

Adding a hook, or changing one's arguments, without updating both the guide
and a test makes these tests fail; the tests after them prove that on a
made-up new hook and a made-up changed one.

The guide's other code must stay valid too (the last section here): every
python block compiles; the complete Acme driver it shows runs against a real
local HTTP server, with the outcomes the guide claims; the webhook example's
fixtures it shows exist in that example's tests with the arguments shown;
and the packaging snippet has what a build needs.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import inspect
import json
import re
import socket
import sys
import textwrap
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast, ConfigurationError, PublishError, hookspecs
from broadcasting.plugin import Driver, register_driver, unregister_driver

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "docs" / "writing-a-driver.md", ROOT / "docs" / "hooks.md"]
TEST_ROOTS = [ROOT / "tests", *sorted(ROOT.glob("examples/*/tests"))]
THIS_FILE = Path(__file__).resolve()

HookSpec = Callable[..., Any]


def hook_specs() -> dict[str, HookSpec]:
    """Every hook specification: functions carrying pluggy's ``broadcasting_spec`` marker."""
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, "broadcasting_spec")
    }


def _annotation(value: object) -> str:
    return value if isinstance(value, str) else inspect.formatannotation(value)


def spec_block(spec: HookSpec) -> str:
    """The decorator and ``def`` line the guide must show for ``spec``."""
    opts = spec.broadcasting_spec  # type: ignore[attr-defined]
    flags = [f"{flag}=True" for flag in ("firstresult", "historic") if opts.get(flag)]
    decorator = "@hookspec" + (f"({', '.join(flags)})" if flags else "")
    signature = inspect.signature(spec)
    params = []
    for param in signature.parameters.values():
        text = param.name
        if param.annotation is not inspect.Parameter.empty:
            text += f": {_annotation(param.annotation)}"
        params.append(text)
    returns = ""
    if signature.return_annotation is not inspect.Signature.empty:
        returns = f" -> {_annotation(signature.return_annotation)}"
    return f"{decorator}\ndef {spec.__name__}({', '.join(params)}){returns}:"


def argnames(spec: HookSpec) -> list[str]:
    return list(inspect.signature(spec).parameters)


def docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in DOC_FILES if p.exists())


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, re.DOTALL)


def is_documented(spec: HookSpec, markdown: str) -> bool:
    """The exact current decorator + signature appears in a python block."""
    block = spec_block(spec)
    return any(block in code for code in python_blocks(markdown))


def _parse(code: str) -> ast.Module:
    try:
        return ast.parse(code)
    except SyntaxError:  # a bare signature, as in the hook reference
        return ast.parse(code.rstrip() + "\n    ...\n")


def _params(node: ast.FunctionDef) -> list[str]:
    names = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
    return names[1:] if names[:1] == ["self"] else names


def stale_doc_hooks(markdown: str, specs: dict[str, HookSpec]) -> list[str]:
    """Problems with hook definitions shown in the docs' python blocks."""
    problems = []
    for code in python_blocks(markdown):
        for node in ast.walk(_parse(code)):
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("broadcasting_"):
                continue
            spec = specs.get(node.name)
            if spec is None:
                problems.append(f"the docs define {node.name}, which is not a hook")
                continue
            extra = set(_params(node)) - set(argnames(spec))
            if extra:
                problems.append(f"the docs' {node.name} uses arguments {sorted(extra)}")
            decorators = [ast.unparse(d) for d in node.decorator_list]
            if any(d.startswith("hookspec") for d in decorators):
                args = node.args.args
                shown = ", ".join(
                    a.arg + (f": {ast.unparse(a.annotation)}" if a.annotation else "") for a in args
                )
                returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
                line = f"def {node.name}({shown}){returns}:"
                if line != spec_block(spec).split("\n")[1]:
                    problems.append(f"the docs' spec of {node.name} is out of date: {line!r}")
    return problems


def candidate_files() -> Iterable[Path]:
    for root in TEST_ROOTS:
        for path in sorted(root.rglob("*.py")):
            if path.resolve() != THIS_FILE and "node_modules" not in path.parts:
                yield path


@functools.cache
def _module_facts(path: Path) -> tuple[frozenset[str], frozenset[tuple[str, ...]]]:
    """What the hook checks read of a test module, read once per run (each hook's check reads
    every test module; parsed again for each, the 33 checks took 9 s): the names of its
    functions; each ``broadcasting_*`` function it defines, with its argument names
    (``"def", name, *names``); each it calls with keywords alone (``"call", name, *sorted``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names, hooks = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
            if isinstance(node, ast.FunctionDef) and node.name.startswith("broadcasting_"):
                hooks.add(("def", node.name, *_params(node)))
        if isinstance(node, ast.Call) and not node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if isinstance(called, str) and called.startswith("broadcasting_"):
                keywords = sorted(k.arg for k in node.keywords if k.arg is not None)
                hooks.add(("call", called, *keywords))
    return frozenset(names), frozenset(hooks)


def modules_exercising(spec: HookSpec, paths: Iterable[Path]) -> list[Path]:
    """Modules with ``test_hook_<name>`` that also implement the hook with exactly its
    argument names, or call it with exactly those as keywords."""
    name, wanted = spec.__name__, argnames(spec)
    found = []
    for path in paths:
        names, hooks = _module_facts(path)
        pinned = ("def", name, *wanted) in hooks or ("call", name, *sorted(wanted)) in hooks
        if f"test_hook_{name}" in names and pinned:
            found.append(path)
    return found


SPECS = hook_specs()


def test_there_are_hooks_to_check() -> None:
    assert {"broadcasting_connect", "broadcasting_publish"} <= set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_is_documented_with_its_current_signature(name: str) -> None:
    spec = SPECS[name]
    assert is_documented(spec, docs_text()), (
        f"docs/writing-a-driver.md must show {name} in a python block exactly as:\n\n"
        f"{spec_block(spec)}"
    )


def test_docs_show_no_stale_hooks() -> None:
    assert stale_doc_hooks(docs_text(), SPECS) == []


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_is_exercised_by_a_test(name: str) -> None:
    spec = SPECS[name]
    assert modules_exercising(spec, candidate_files()), (
        f"no test module has `def test_hook_{name}` together with an implementation or "
        f"keyword call of {name} using exactly ({', '.join(argnames(spec))})"
    )


# -- the checks themselves catch a new hook and a changed hook -----------------------------


def _make_spec(source: str) -> HookSpec:
    namespace: dict[str, Any] = {}
    header = "from __future__ import annotations\nfrom broadcasting.plugin import hookspec\n"
    exec(header + source, namespace)
    (spec,) = [v for k, v in namespace.items() if k.startswith("broadcasting_")]
    assert hasattr(spec, "broadcasting_spec")
    return spec  # type: ignore[no-any-return]


def test_a_new_undocumented_untested_hook_fails_both_checks() -> None:
    spec = _make_spec(
        "@hookspec\n"
        "def broadcasting_disconnect(driver: Driver, reason: str) -> None:\n    '''.'''\n"
    )
    assert not is_documented(spec, docs_text())
    assert modules_exercising(spec, candidate_files()) == []


def test_a_changed_hook_fails_both_checks() -> None:
    changed = _make_spec(
        "@hookspec(firstresult=True)\n"
        "def broadcasting_publish(driver: Driver, message: Message, attempt: int)"
        " -> Receipt | None:\n    '''.'''\n"
    )
    assert not is_documented(changed, docs_text())
    assert modules_exercising(changed, candidate_files()) == []
    # and the real one passes the same checks
    real = SPECS["broadcasting_publish"]
    assert is_documented(real, docs_text())
    assert modules_exercising(real, candidate_files())


def test_a_changed_annotation_or_flag_fails_the_docs_check() -> None:
    retyped = _make_spec(
        "@hookspec(firstresult=True)\n"
        "def broadcasting_connect(name: str, options: dict[str, Any]) -> Driver | None:\n"
        "    '''.'''\n"
    )
    unflagged = _make_spec(
        "@hookspec\n"
        "def broadcasting_connect(name: str, options: Mapping[str, Any]) -> Driver | None:\n"
        "    '''.'''\n"
    )
    assert not is_documented(retyped, docs_text())
    assert not is_documented(unflagged, docs_text())


def test_stale_hooks_in_the_docs_are_reported() -> None:
    markdown = (
        "```python\n@hookspec(firstresult=True)\n"
        "def broadcasting_connect(name: str, options: Mapping[str, Any], region: str)"
        " -> Driver | None:\n```\n"
        "```python\n@hookimpl\ndef broadcasting_removed(driver):\n    pass\n```\n"
    )
    problems = stale_doc_hooks(markdown, SPECS)
    assert any("broadcasting_removed" in p and "not a hook" in p for p in problems), problems
    assert any("['region']" in p for p in problems), problems
    assert any("out of date" in p for p in problems), problems


# -- the guide's other code ----------------------------------------------------------------

GUIDE = DOC_FILES[0]
WEBHOOK_TESTS = ROOT / "examples" / "webhook" / "tests"


def guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


def guide_example(name: str) -> str:
    """The python block that follows ``<!-- example: name -->`` in the guide."""
    match = re.search(
        rf"<!-- example: {re.escape(name)} -->\s*```python\n(.*?)```", guide_text(), re.DOTALL
    )
    assert match, f"no example {name!r} in {GUIDE.name}"
    return match.group(1)


def test_every_python_block_of_the_guide_compiles() -> None:
    """Fragments (methods, a bare hook signature, top-level await) included."""
    text = guide_text()
    blocks = python_blocks(text)
    assert len(blocks) > 10
    for code in blocks:
        where = f"{GUIDE.name}, the python block at line {text[: text.index(code)].count(chr(10))}"
        try:
            compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError:
            if not re.fullmatch(r"@hookspec.*\ndef .*:\n", code, re.DOTALL):
                raise
            compile(code + "    ...\n", where, "exec")  # a bare signature (hook reference)


def _functions(code: str) -> dict[str, list[str]]:
    """Every function (and method) defined in ``code``, by name, with its argument names."""
    return {
        node.name: _params(node)
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.FunctionDef)
    }


@pytest.mark.parametrize(
    ("example", "real"),
    [("webhook-conftest", "conftest.py"), ("webhook-conformance", "test_conformance.py")],
)
def test_the_webhook_fixtures_the_guide_shows_exist(example: str, real: str) -> None:
    """Each function in the shortened snippet exists in the real file, asking for no more."""
    shown = _functions(guide_example(example))
    actual = _functions((WEBHOOK_TESTS / real).read_text(encoding="utf-8"))
    assert shown
    for name, params in shown.items():
        assert name in actual, f"the guide's {real} shows {name}(), which the real one lacks"
        extra = set(params) - set(actual[name])
        assert not extra, f"the guide's {name}() asks for {sorted(extra)}; the real one does not"


def test_the_fixtures_the_guide_conformance_test_requests_are_shown() -> None:
    """Every fixture the conformance snippet requests is the kit's or in the conftest snippet."""
    from broadcasting.testing import DriverConformance

    conftest = _functions(guide_example("webhook-conftest"))
    requested = {
        param
        for params in _functions(guide_example("webhook-conformance")).values()
        for param in params
    }
    kit = {name for name in dir(DriverConformance) if not name.startswith("_")}
    missing = requested - set(conftest) - kit
    assert not missing, f"the guide's conformance test requests unexplained fixtures {missing}"


def test_the_packaging_snippet_builds() -> None:
    """The pyproject.toml of the guide has a build system, a test extra and a class entry point."""
    blocks = re.findall(r"```toml\n(.*?)```", guide_text(), re.DOTALL)
    [pyproject] = [textwrap.dedent(b) for b in blocks if "[build-system]" in textwrap.dedent(b)]
    for needed in (
        'build-backend = "hatchling.build"',
        "[project.optional-dependencies]\ntest = [",
        '[project.entry-points."broadcasting.drivers"]\n'
        'acme = "broadcasting_acme:BroadcastAcmeDriver"',
    ):
        assert needed in pyproject, needed
    if sys.version_info >= (3, 11):
        import tomllib

        data = tomllib.loads(pyproject)
        assert data["build-system"]["requires"]
        assert data["project"]["optional-dependencies"]["test"]
    assert "python -m build" in guide_text()


# the Acme driver of §5, run against a real HTTP server on 127.0.0.1


class _AcmeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _AcmeServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.requests.append((self.path, dict(self.headers.items()), body))
            action = self.server.script.pop(0) if self.server.script else 204
        if action == "hang up":  # processed; the answer is lost
            self.close_connection = True
            return
        self.send_response(int(action))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class _AcmeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _AcmeHandler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.script: list[int | str] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@pytest.fixture
def acme() -> Iterator[_AcmeServer]:
    """The Acme service: records every request, answers 204 unless scripted."""
    server = _AcmeServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


@pytest.fixture
def acme_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Driver]]:
    """The guide's BroadcastAcmeDriver, registered as ``acme``."""
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)  # urllib would send 127.0.0.1 through it
    namespace: dict[str, Any] = {"__name__": "guide_acme"}
    exec(compile(guide_example("acme-driver"), str(GUIDE), "exec"), namespace)
    cls = namespace["BroadcastAcmeDriver"]
    assert issubclass(cls, Driver)
    register_driver("acme", cls)
    yield cls
    unregister_driver("acme")


KEY = "acme-key-0123456789"


def _acme(url: str, **options: Any) -> Broadcast:
    options = {"api_key": KEY, "endpoint": url, "retry_backoff": 0.01, **options}
    return Broadcast({"DRIVER": "acme", "DRIVERS": {"acme": options}})


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_guide_acme_driver_delivers_a_fan_out_in_requests_of_100(
    acme: _AcmeServer, acme_driver: type[Driver], mode: str
) -> None:
    channels = [f"c{n}" for n in range(150)]
    with _acme(acme.url) as broadcast:
        if mode == "sync":
            receipt = broadcast.channel(channels, {"id": 1}, "created")
        else:
            receipt = asyncio.run(broadcast.achannel(channels, {"id": 1}, "created"))
        assert KEY not in repr(broadcast.driver())
    assert receipt.requests == 2
    bodies = sorted((json.loads(body) for _, _, body in acme.requests), key=len)
    assert sorted(len(body["channels"]) for body in bodies) == [50, 100]
    assert sorted(c for body in bodies for c in body["channels"]) == sorted(channels)
    for path, headers, _ in acme.requests:
        assert path == "/v1/events"
        assert headers["Authorization"] == f"Bearer {KEY}"
        assert headers["Idempotency-Key"] == receipt.message_id
    assert {body["data"] for body in bodies} == {'{"id":1}'}


@pytest.mark.parametrize(
    ("script", "outcome", "requests"),
    [
        ([503], "unknown", 1),  # Acme may have processed it: not re-sent
        (["hang up"], "unknown", 1),  # processed, answer lost: not re-sent
        ([401], "failed", 1),  # refused, final
        ([429, 429, 429], "failed", 3),  # refused, retried twice (the default)
        ([429, 204], "delivered", 2),
    ],
)
def test_guide_acme_driver_outcomes(
    acme: _AcmeServer,
    acme_driver: type[Driver],
    script: list[int | str],
    outcome: str,
    requests: int,
) -> None:
    """What §5 claims of the Acme driver: with the defaults, nothing is sent twice."""
    acme.script.extend(script)
    with _acme(acme.url) as broadcast:
        if outcome == "delivered":
            assert broadcast.channel("orders", {"id": 1}).requests == requests
        else:
            with pytest.raises(PublishError) as info:
                broadcast.channel("orders", {"id": 1})
            assert getattr(info.value, outcome) == ("orders",)
            assert info.value.requests == requests
            assert KEY not in str(info.value)
    assert len(acme.requests) == requests


def test_guide_acme_driver_retries_a_refused_connection(acme_driver: type[Driver]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    with _acme(f"http://127.0.0.1:{port}") as broadcast, pytest.raises(PublishError) as info:
        broadcast.channel(["a", "b"], {"id": 1})
    assert info.value.failed == ("a", "b")
    assert info.value.requests == 3
    assert "could not reach Acme" in str(info.value)


def test_guide_acme_driver_configuration(acme_driver: type[Driver]) -> None:
    for options, key in (
        ({}, "api_key"),
        ({"api_key": KEY, "region": "eu"}, "region"),
        ({"api_key": KEY, "timeout": 0}, "timeout"),
        ({"api_key": KEY, "endpoint": "ftp://x"}, "endpoint"),
        ({"api_key": KEY, "retries": -1}, "retries"),  # a delivery option: the core's check
    ):
        with pytest.raises(ConfigurationError) as info:
            Broadcast({"DRIVERS": {"acme": options}}).driver("acme")
        assert (info.value.driver, info.value.key) == ("acme", key)
        assert KEY not in str(info.value)


def test_the_guide_states_the_kits_secret_name_rule() -> None:
    """The option names the guide says the kit's safety net catches (and misses) are right.

    The rule lives in the kit (``broadcasting.testing``); when it changes,
    this fails until the guide's sentence says what it now does.
    """
    from broadcasting.testing._suite import _SECRET_KEY

    sentence = re.search(
        r"fails when an option whose\s+\*name\* contains (.*?)\s+holds a string you did not"
        r" declare\. The net goes by name only: it does\s+not catch an option called (.*?),",
        guide_text(),
        re.DOTALL,
    )
    assert sentence, "the guide no longer states the kit's secret-name rule"
    caught = re.findall(r"`([^`]+)`", sentence.group(1))
    missed = re.findall(r"`([^`]+)`", sentence.group(2))
    assert caught and missed
    assert all(_SECRET_KEY.search(f"app_{word}") for word in caught), caught
    assert not any(_SECRET_KEY.search(word) for word in missed), missed
    for word in ("secret", "password", "passwd", "token", "credential", "api_key", "key", "auth"):
        listed = caught if _SECRET_KEY.search(word) else missed
        assert word in listed, f"the guide should list {word!r} among {listed}"
