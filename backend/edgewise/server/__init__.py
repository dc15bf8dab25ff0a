"""The web layer: FastAPI app (app.py), SQLite store, job queue. Thin over the engine."""
from .app import create_app
from .config import Catalog, Settings

__all__ = ["Catalog", "Settings", "create_app"]
