"""``manage.py broadcasting ...``: the ``broadcasting`` command line, with the settings' config."""
