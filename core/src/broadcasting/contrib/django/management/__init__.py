"""Management commands of the ``broadcasting.contrib.django`` app."""
