"""An app with channel rules and webhook handlers in its ``broadcasting.py``."""
