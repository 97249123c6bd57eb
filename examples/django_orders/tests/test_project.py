"""The project passes Django's own checks, and its migrations match its models."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command


def test_the_system_checks_pass(site: None) -> None:
    out = StringIO()
    call_command("check", stdout=out)  # raises SystemCheckError on an error
    assert "no issues" in out.getvalue()


def test_the_migrations_are_up_to_date(site: None) -> None:
    call_command("makemigrations", check=True, dry_run=True, verbosity=0)  # exits 1 if not


def test_seed_orders_makes_the_demo_users_and_their_orders(site: None) -> None:
    out = StringIO()
    call_command("seed_orders", stdout=out)
    call_command("seed_orders", stdout=StringIO())  # twice: nothing more
    assert out.getvalue().splitlines() == [
        "ann (password orders-demo): orders #1, #2",
        "bob (password orders-demo): orders #3",
    ]
