#!/usr/bin/env python
"""The Django project of tests/web/test_django_app.py: manage.py check, test, broadcasting."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
