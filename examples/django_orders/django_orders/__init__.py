"""The Django project of the orders example (settings, URLs, the Broadcast)."""
