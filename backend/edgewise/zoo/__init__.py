"""Bundled models, tasks and circuits (data files), and GPT-2 small's published circuits (gpt2.py)."""
