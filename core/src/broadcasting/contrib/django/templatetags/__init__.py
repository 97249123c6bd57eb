"""Template tags of the ``broadcasting.contrib.django`` app: ``{% load broadcasting %}``."""
