"""fastapi-easy: generate FastAPI services that are fast from their first commit."""

__version__ = "0.1.0"
