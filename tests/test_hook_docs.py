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
and a test makes these tests fail; the last tests here prove that on a
made-up new hook and a made-up changed one.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from broadcasting import hookspecs

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


def _pins(tree: ast.Module, spec: HookSpec) -> bool:
    """Whether the module implements or calls the hook with exactly its argument names."""
    name, wanted = spec.__name__, argnames(spec)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name and _params(node) == wanted:
            return True
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            keywords = sorted(k.arg for k in node.keywords if k.arg is not None)
            if called == name and not node.args and keywords == sorted(wanted):
                return True
    return False


def modules_exercising(spec: HookSpec, paths: Iterable[Path]) -> list[Path]:
    """Modules with ``test_hook_<name>`` that also pin the hook's current arguments."""
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        has_test = any(
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name == f"test_hook_{spec.__name__}"
            for node in ast.walk(tree)
        )
        if has_test and _pins(tree, spec):
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
    header = "from __future__ import annotations\nfrom broadcasting import hookspec\n"
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
