"""A small shop whose views broadcast events: the example for ``broadcast_fake``."""
