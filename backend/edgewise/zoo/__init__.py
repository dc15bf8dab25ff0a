"""Bundled models, tasks and circuits (data files), GPT-2 small's published circuits (gpt2.py) and the
tracr tasks' metrics (metrics.py)."""
from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent
