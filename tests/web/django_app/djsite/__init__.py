"""A project using the ``broadcasting.contrib.django`` app, for its tests."""
