"""The orders app: orders in the database, the board page, and what goes live."""
