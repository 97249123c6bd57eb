"""docs/django.md's first part, "The app", run: its files make a project (``startproject
shopsite``, ``startapp shop``, then each titled block of the part written to its path), its
commands run there, line by line, and tests of ours check what the part says.

The part's blocks are titled with paths under ``shopsite/`` and ``shop/``; the rest of the
page is the by-hand project of tests/web/test_django_guide.py (``mysite/``, ``orders/``).
Django runs in subprocesses only. ``manage.py broadcasting check`` and ``send`` go to a real
soketi whose app the environment names, as a user's would.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS / "servers") not in sys.path:
    sys.path.insert(0, str(TESTS / "servers"))

from soketi_pytest import start_soketi  # noqa: E402

GUIDE = TESTS.parent / "docs" / "django.md"
_FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
_TITLE = re.compile(r'\btitle="([^"]+)"')
TIMEOUT = 120
APP = {"id": "1234567", "key": "shop-key", "secret": "shop-secret-0123"}

OURS = """
import hashlib, hmac, json, os, time

from django.contrib.auth import get_user_model
from django.test import TestCase

from broadcasting.testing import fake

from .models import Order


class TheAppAsTheGuideSays(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.ann = get_user_model().objects.create_user("ann")
        cls.order = Order.objects.create(customer=cls.ann)

    def subscribe(self, channel):
        return self.client.post("/broadcasting/auth", {"socket_id": "1.2", "channel_name": channel})

    def test_the_rule_gets_the_user(self):
        self.assertEqual(self.subscribe(f"private-orders.{self.order.pk}").status_code, 403)
        self.client.force_login(self.ann)
        answer = self.subscribe(f"private-orders.{self.order.pk}")
        self.assertEqual(answer.status_code, 200)
        self.assertTrue(answer.json()["auth"].startswith(os.environ["PUSHER_KEY"] + ":"))
        self.assertEqual(self.subscribe("private-orders.abc").status_code, 403)

    def test_sign_in_data_comes_from_the_setting(self):
        self.client.force_login(self.ann)
        answer = self.client.post("/broadcasting/user-auth", {"socket_id": "1.2"})
        data = json.loads(answer.json()["user_data"])
        self.assertEqual(data, {"id": str(self.ann.pk), "user_info": {"name": "ann"}})

    def test_the_webhook_handler_runs(self):
        body = json.dumps({"time_ms": int(time.time() * 1000), "events": [
            {"name": "channel_occupied", "channel": f"private-orders.{self.order.pk}"}]}).encode()
        secret = os.environ["PUSHER_SECRET"].encode()
        headers = {"X-Pusher-Key": os.environ["PUSHER_KEY"],
                   "X-Pusher-Signature": hmac.new(secret, body, hashlib.sha256).hexdigest()}
        answer = self.client.post("/broadcasting/webhook", body, content_type="application/json",
                                  headers=headers)
        self.assertEqual(answer.json(), {"ok": True, "events": 1})
        self.assertTrue(Order.objects.get(pk=self.order.pk).watched)

    def test_the_page_gets_the_config_and_not_the_secret(self):
        page = self.client.get("/").content.decode()
        self.assertIn('<script type="application/json" id="broadcasting-config">', page)
        self.assertIn('"wsHost":"127.0.0.1"', page)
        self.assertNotIn(os.environ["PUSHER_SECRET"], page)

    def test_the_view_publishes_to_others(self):
        with fake() as sent:
            self.client.post("/orders/1/ship", headers={"X-Socket-ID": "1.2"})
        [one] = sent.assert_sent("shipped", channel="private-orders.1", times=1)
        self.assertEqual(one.socket_id, "1.2")
"""


@dataclass(frozen=True)
class Block:
    lang: str
    path: str | None
    code: str


def the_app_part() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    start = text.index("\n## The app\n")
    return text[start : text.index("\n## By hand", start)]


def blocks() -> list[Block]:
    found = []
    for match in _FENCE.finditer(the_app_part()):
        title = _TITLE.search(match.group("info"))
        found.append(
            Block(match.group("lang"), title.group(1) if title else None, match.group("code"))
        )
    return found


def test_the_parts_files_are_its_own() -> None:
    """Under shopsite/ and shop/ (the by-hand project writes them too, unused): no test files
    (its pytest would collect them), no appended blocks (it appends to its own files)."""
    titled = [b for b in blocks() if b.path is not None]
    assert {b.path.split("/")[0] for b in titled} == {"shopsite", "shop"}
    for block in titled:
        name = block.path.rsplit("/", 1)[-1]
        assert not name.startswith("test"), block.path
        if block.lang == "python":
            assert block.code.startswith(f"# {block.path}"), block.path
    text = GUIDE.read_text(encoding="utf-8")
    assert '<!-- django-guide: append -->\n```python title="shop' not in text


def environment(**extra: str) -> dict[str, str]:
    dropped = ("PYTEST_", "DJANGO_", "PUSHER_", "BROADCAST", "COV_", "COVERAGE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.pop("PYTHONPATH", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return {**env, **extra}


def sh(
    argv: list[str], root: Path, env: dict[str, str], ok: bool = True
) -> subprocess.CompletedProcess[str]:
    if argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if ok:
        assert done.returncode == 0, f"{argv[1:]}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("django-app-guide")
    env = environment()
    sh([sys.executable, "-m", "django", "startproject", "shopsite", "."], root, env)
    sh([sys.executable, "manage.py", "startapp", "shop"], root, env)
    for block in blocks():
        if block.path is not None:
            target = root / block.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
    [page] = [b for b in blocks() if b.lang == "html"]  # titled in the prose, before it
    assert "`shop/templates/shop/page.html`:\n\n```html\n" + page.code in the_app_part()
    (root / "shop" / "templates" / "shop").mkdir(parents=True)
    (root / "shop" / "templates" / "shop" / "page.html").write_text(page.code, encoding="utf-8")
    (root / "shop" / "tests.py").write_text(OURS, encoding="utf-8")
    sh([sys.executable, "manage.py", "makemigrations", "shop"], root, env)
    return root


def commands() -> list[list[str]]:
    lines = [line for b in blocks() if b.lang == "sh" for line in b.code.splitlines()]
    return [
        shlex.split(line, comments=True) for line in lines if line and not line.startswith("pip ")
    ]


def test_check_is_clean_without_credentials_and_deploy_names_the_missing_one(project: Path) -> None:
    env = environment()
    [check, deploy] = [argv for argv in commands() if argv[2] == "check"]
    assert "System check identified no issues (0 silenced)." in sh(check, project, env).stdout
    done = sh(deploy, project, env, ok=False)
    assert done.returncode == 1
    assert "broadcasting.E003" in done.stderr and "'app_id'" in done.stderr, done.stderr


def test_the_projects_tests_pass(project: Path) -> None:
    env = environment(PUSHER_APP_ID=APP["id"], PUSHER_KEY=APP["key"], PUSHER_SECRET=APP["secret"])
    done = sh([sys.executable, "manage.py", "test", "shop"], project, env)
    assert "Ran 5 tests" in done.stderr and re.search(r"^OK$", done.stderr, re.M), done.stderr


def test_manage_py_broadcasting_against_soketi(project: Path) -> None:
    soketi = start_soketi(**{"appManager.array.apps": [APP]})
    try:
        env = environment(
            PUSHER_APP_ID=APP["id"],
            PUSHER_KEY=APP["key"],
            PUSHER_SECRET=APP["secret"],
            PUSHER_PORT=str(soketi.port),
        )
        ran = {argv[3]: sh(argv, project, env) for argv in commands() if argv[2] == "broadcasting"}
    finally:
        soketi.close()
    assert set(ran) == {"drivers", "check", "send"}
    assert "pusher" in ran["drivers"].stdout
    assert re.search(r"^pusher \(default\)\s+ok\b", ran["check"].stdout, re.M), ran["check"].stdout
    assert ran["send"].stdout.startswith("sent: pusher: 'shipped' -> private-orders.1")
    assert APP["secret"] not in "".join(r.stdout + r.stderr for r in ran.values())
