"""SQLite store (stdlib sqlite3) for datasets and runs, in <data_dir>/edgewise.sqlite3.

A dataset is keyed by the content hash of its tokenized pairs and the model they were tokenized
for, so the same upload twice is one dataset. A finished run's scores are one little-endian
float64 blob in the graph's edge order (`Graph.edge_names`), not a row per edge.
Opening the store marks runs that were queued or running when the server stopped as failed.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from ..data import PromptPairs

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY, model TEXT NOT NULL, sha256 TEXT NOT NULL, filename TEXT, n_pairs INTEGER NOT NULL,
    has_answers INTEGER NOT NULL, tokens TEXT NOT NULL, preview TEXT NOT NULL, warnings TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, model TEXT, dataset_id TEXT, method TEXT NOT NULL, metric TEXT, ablation TEXT,
    batch_size INTEGER, ig_steps INTEGER, status TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0, stage TEXT,
    error TEXT, warnings TEXT NOT NULL DEFAULT '[]', cfg TEXT, n_edges INTEGER, scores BLOB, in_graph BLOB,
    curve TEXT, meta TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, started_at REAL, finished_at REAL);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
"""
STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")
INTERRUPTED = "interrupted: the server stopped while this run was {}; start it again"
RUN_FIELDS = ("id", "model", "dataset_id", "method", "metric", "ablation", "batch_size", "ig_steps", "status",
              "progress", "stage", "error", "warnings", "cfg", "n_edges", "meta", "created_at", "started_at",
              "finished_at")


class Store:
    def __init__(self, data_dir: Path | str):
        self.path = Path(data_dir) / "edgewise.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.row_factory = sqlite3.Row
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
        self.n_interrupted = self._mark_interrupted()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args=()) -> int:
        """Run a write in its own transaction; the number of rows it changed."""
        with self._lock, self._db:
            return self._db.execute(sql, args).rowcount

    def _one(self, sql: str, args=()) -> sqlite3.Row | None:
        with self._lock:  # fetch under the lock too: the connection is shared by threads
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args=()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _mark_interrupted(self) -> int:
        now = time.time()
        n = 0
        for status in ("running", "queued"):
            n += self._exec("UPDATE runs SET status='failed', error=?, finished_at=? WHERE status=?",
                            (INTERRUPTED.format(status), now, status))
        return n

    # ------------------------------------------------------------ datasets
    def add_dataset(self, model: str, pairs: PromptPairs, filename: str = "", preview_rows: int = 5) -> tuple[dict, bool]:
        """Store tokenized pairs; (dataset, created). The same pairs for the same model give the same id."""
        sha = pairs.sha256()
        ds_id = hashlib.sha256(f"{model}\n{sha}".encode()).hexdigest()[:16]
        tokens = json.dumps({"clean": pairs.clean, "corrupted": pairs.corrupted, "answer": pairs.answer,
                             "wrong_answer": pairs.wrong_answer}, separators=(",", ":"))
        preview = json.dumps(pairs.records[:preview_rows])
        n = self._exec("INSERT OR IGNORE INTO datasets VALUES (?,?,?,?,?,?,?,?,?,?)",
                         (ds_id, model, sha, filename, len(pairs), pairs.answer is not None, tokens, preview,
                          json.dumps(pairs.warnings), time.time()))
        return self.get_dataset(ds_id), n == 1

    def get_dataset(self, ds_id: str) -> dict | None:
        row = self._one("SELECT id, model, sha256, filename, n_pairs, has_answers, preview, warnings, created_at "
                        "FROM datasets WHERE id=?", (ds_id,))
        return _dataset(row) if row else None

    def find_dataset(self, model: str, sha256: str) -> dict | None:
        row = self._one("SELECT id FROM datasets WHERE model=? AND sha256=?", (model, sha256))
        return self.get_dataset(row["id"]) if row else None

    def list_datasets(self) -> list[dict]:
        rows = self._all("SELECT id, model, sha256, filename, n_pairs, has_answers, preview, warnings, created_at "
                         "FROM datasets ORDER BY created_at DESC")
        return [_dataset(r) for r in rows]

    def load_pairs(self, ds_id: str) -> PromptPairs:
        row = self._one("SELECT tokens, warnings FROM datasets WHERE id=?", (ds_id,))
        if row is None:
            raise KeyError(f"no dataset {ds_id!r}")
        t = json.loads(row["tokens"])
        return PromptPairs(t["clean"], t["corrupted"], t["answer"], t["wrong_answer"], json.loads(row["warnings"]))

    # ------------------------------------------------------------ runs
    def create_run(self, *, model, dataset_id, method, metric, ablation, batch_size, ig_steps, status="queued",
                   meta=None) -> dict:
        run_id = uuid.uuid4().hex[:12]
        self._exec("INSERT INTO runs (id, model, dataset_id, method, metric, ablation, batch_size, ig_steps, status, "
                   "meta, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (run_id, model, dataset_id, method, metric, ablation, batch_size, ig_steps, status,
                    json.dumps(meta or {}), time.time()))
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> dict | None:
        row = self._one(f"SELECT {', '.join(RUN_FIELDS)} FROM runs WHERE id=?", (run_id,))
        return _run(row) if row else None

    def list_runs(self, limit: int = 100) -> list[dict]:
        rows = self._all(f"SELECT {', '.join(RUN_FIELDS)} FROM runs ORDER BY created_at DESC LIMIT ?", (limit,))
        return [_run(r) for r in rows]

    def set_status(self, run_id: str, status: str, *, error: str | None = None, only_from=None) -> bool:
        """Move a run to `status` (only from the statuses in `only_from`, when given); True if it moved."""
        assert status in STATUSES, status
        now = time.time()
        sql = "UPDATE runs SET status=?, error=?"
        args: list = [status, error]
        if status == "running":
            sql += ", started_at=?"
            args.append(now)
        if status in FINAL:
            sql += ", finished_at=?"
            args.append(now)
        sql += " WHERE id=?"
        args.append(run_id)
        if only_from:
            sql += f" AND status IN ({', '.join('?' * len(only_from))})"
            args += list(only_from)
        return self._exec(sql, args) == 1

    def set_progress(self, run_id: str, progress: float, stage: str | None) -> None:
        self._exec("UPDATE runs SET progress=?, stage=? WHERE id=?", (progress, stage, run_id))

    def save_result(self, run_id: str, *, cfg: dict, scores: np.ndarray, curve: list | None, warnings: list[str],
                    in_graph: np.ndarray | None = None, meta: dict | None = None, status: str = "done") -> None:
        """Store a finished run's scores (one per graph edge), its curve and warnings, and mark it `status`."""
        blob = np.ascontiguousarray(scores, dtype="<f8").tobytes()
        mask = None if in_graph is None else np.packbits(np.asarray(in_graph, dtype=bool)).tobytes()
        sql = ("UPDATE runs SET cfg=?, n_edges=?, scores=?, in_graph=?, curve=?, warnings=?, progress=1, "
               "stage=NULL, status=?, finished_at=?")
        args = [json.dumps(cfg), len(scores), blob, mask, None if curve is None else json.dumps(curve),
                json.dumps(warnings), status, time.time()]
        if meta is not None:
            sql += ", meta=?"
            args.append(json.dumps(meta))
        self._exec(sql + " WHERE id=?", args + [run_id])

    def get_scores(self, run_id: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(scores float64 [n_edges], in_graph bool [n_edges] or None) of a finished run."""
        row = self._one("SELECT scores, in_graph, n_edges FROM runs WHERE id=?", (run_id,))
        if row is None or row["scores"] is None:
            return None, None
        scores = np.frombuffer(row["scores"], dtype="<f8")
        mask = None
        if row["in_graph"] is not None:
            mask = np.unpackbits(np.frombuffer(row["in_graph"], dtype=np.uint8))[: row["n_edges"]].astype(bool)
        return scores, mask

    def get_curve(self, run_id: str) -> list | None:
        row = self._one("SELECT curve FROM runs WHERE id=?", (run_id,))
        return json.loads(row["curve"]) if row and row["curve"] else None


def _dataset(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["has_answers"] = bool(d["has_answers"])
    d["preview"] = json.loads(d["preview"])
    d["warnings"] = json.loads(d["warnings"])
    return d


def _run(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["warnings"] = json.loads(d["warnings"] or "[]")
    d["meta"] = json.loads(d["meta"] or "{}")
    d["cfg"] = json.loads(d["cfg"]) if d["cfg"] else None
    return d
