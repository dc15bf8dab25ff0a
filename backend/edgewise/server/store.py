"""SQLite store (stdlib sqlite3) for datasets and runs, in <data_dir>/edgewise.sqlite3.

A dataset is keyed by the content hash of its tokenized pairs and the model they were tokenized
for, so the same upload twice is one dataset. A run's scores are one little-endian float64 blob in
the graph's edge order (`Graph.edge_names`), not a row per edge; they are stored (`scored`) before
its faithfulness curve, whose points are appended as they are computed (`curve_complete` at the end),
and its MIB scores (`mib`, JSON) after the curve.
Every check-then-write (queue cap, deleting what a run uses, importing a run with its scores) is one
transaction under the store's lock. Opening the store marks runs that were queued or running when the
server stopped as failed; a data directory that cannot be opened or written is a `StoreError`.
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
# columns added after the first release: (name, declaration, value for rows that predate them)
ADDED = (("name", "TEXT", None), ("dtype", "TEXT", "'float32'"), ("n_pairs", "INTEGER", None),
         ("dataset_name", "TEXT", None), ("scored", "INTEGER NOT NULL DEFAULT 0", "scores IS NOT NULL"),
         ("curve_complete", "INTEGER NOT NULL DEFAULT 0", "status = 'done'"), ("mib", "TEXT", None))
STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")
ACTIVE = ("queued", "running")
INTERRUPTED = "interrupted: the server stopped while this run was {}; start it again"
SUMMARY_FIELDS = ("id", "name", "model", "dataset_id", "n_pairs", "dataset_name", "method", "metric", "ablation",
                  "batch_size", "ig_steps", "dtype", "status", "progress", "stage", "scored", "curve_complete",
                  "error", "warnings", "n_edges", "created_at", "started_at", "finished_at")
RUN_FIELDS = SUMMARY_FIELDS + ("cfg", "meta")
DATASET_FIELDS = ("id", "model", "sha256", "filename", "n_pairs", "has_answers", "preview", "warnings", "created_at")


class StoreError(RuntimeError):
    """The data directory cannot be opened or written (read-only, not a directory, not a database)."""


class QueueFull(RuntimeError):
    """Too many runs are queued (EDGEWISE_MAX_QUEUED)."""


class InUse(RuntimeError):
    """A dataset or run that a queued or running run needs."""


class Store:
    def __init__(self, data_dir: Path | str):
        self.path = Path(data_dir) / "edgewise.sqlite3"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._lock = threading.RLock()
            with self._lock, self._db:
                self._db.execute("PRAGMA journal_mode=WAL")
                # WAL with synchronous=NORMAL: no fsync per commit (progress is written ~10×/s), and a crash
                # can lose at most the last commits, never corrupt the database
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(SCHEMA)
                self._migrate()
            self.n_interrupted = self._mark_interrupted()
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot use the data directory {self.path.parent} ({type(e).__name__}: {e}); "
                             "EDGEWISE_DATA (or --data) must be a writable directory") from None

    def _migrate(self) -> None:
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(runs)")}
        for name, decl, fill in ADDED:
            if name not in have:
                self._db.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl}")
                if fill is not None:
                    self._db.execute(f"UPDATE runs SET {name} = {fill}")

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
        row = self._one(f"SELECT {', '.join(DATASET_FIELDS)} FROM datasets WHERE id=?", (ds_id,))
        return _dataset(row) if row else None

    def find_dataset(self, model: str, sha256: str) -> dict | None:
        row = self._one("SELECT id FROM datasets WHERE model=? AND sha256=?", (model, sha256))
        return self.get_dataset(row["id"]) if row else None

    def list_datasets(self, limit: int = 50, offset: int = 0) -> tuple[list[dict], int]:
        """(datasets newest first without preview and warnings, total count)."""
        fields = [f for f in DATASET_FIELDS if f not in ("preview", "warnings")]
        rows = self._all(f"SELECT {', '.join(fields)} FROM datasets ORDER BY created_at DESC LIMIT ? OFFSET ?",
                         (limit, offset))
        return [_dataset(r) for r in rows], self._one("SELECT count(*) FROM datasets")[0]

    def load_pairs(self, ds_id: str, with_warnings: bool = True) -> PromptPairs:
        row = self._one("SELECT tokens, warnings FROM datasets WHERE id=?", (ds_id,))
        if row is None:
            raise KeyError(f"no dataset {ds_id!r} (deleted?)")
        t = json.loads(row["tokens"])
        warnings = json.loads(row["warnings"]) if with_warnings else []
        return PromptPairs(t["clean"], t["corrupted"], t["answer"], t["wrong_answer"], warnings)

    def delete_dataset(self, ds_id: str) -> bool:
        """Delete a dataset (False if there is none); InUse while a queued or running run needs it."""
        with self._lock, self._db:
            users = self._db.execute("SELECT id FROM runs WHERE dataset_id=? AND status IN ('queued','running')",
                                     (ds_id,)).fetchall()
            if users:
                raise InUse(", ".join(r["id"] for r in users))
            return self._db.execute("DELETE FROM datasets WHERE id=?", (ds_id,)).rowcount == 1

    # ------------------------------------------------------------ runs
    def create_run(self, *, model, dataset_id, method, metric, ablation, batch_size, ig_steps, dtype="float32",
                   name=None, max_queued: int | None = None) -> dict:
        """Queue a run on a stored dataset: KeyError if the dataset is gone, QueueFull at the cap."""
        run_id = uuid.uuid4().hex[:12]
        with self._lock, self._db:
            ds = self._db.execute("SELECT n_pairs, filename FROM datasets WHERE id=?", (dataset_id,)).fetchone()
            if ds is None:
                raise KeyError(dataset_id)
            if max_queued is not None:
                queued = self._db.execute("SELECT count(*) FROM runs WHERE status='queued'").fetchone()[0]
                if queued >= max_queued:
                    raise QueueFull(f"{queued} runs are queued, the limit is {max_queued} (EDGEWISE_MAX_QUEUED)")
            self._db.execute(
                "INSERT INTO runs (id, name, model, dataset_id, n_pairs, dataset_name, method, metric, ablation, "
                "batch_size, ig_steps, dtype, status, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'queued',?)",
                (run_id, name, model, dataset_id, ds["n_pairs"], ds["filename"] or None, method, metric, ablation,
                 batch_size, ig_steps, dtype, time.time()))
        return self.get_run(run_id)

    def add_imported_run(self, *, model, dataset_id, metric, ablation, cfg: dict, scores: np.ndarray,
                         in_graph: np.ndarray, meta: dict, name=None) -> dict:
        """An imported circuit: stored `done` together with its scores, in one transaction."""
        run_id = uuid.uuid4().hex[:12]
        n_pairs = (meta.get("dataset") or {}).get("n_pairs")
        now = time.time()
        self._exec(
            "INSERT INTO runs (id, name, model, dataset_id, n_pairs, dataset_name, method, metric, ablation, "
            "batch_size, status, progress, scored, curve_complete, cfg, n_edges, scores, in_graph, meta, "
            "created_at, started_at, finished_at) VALUES (?,?,?,?,?,?,'imported',?,?,16,'done',1,1,1,?,?,?,?,?,?,?,?)",
            (run_id, name, model, dataset_id, n_pairs, meta.get("source_file") or None, metric, ablation,
             json.dumps(cfg), len(scores), _blob(scores), np.packbits(np.asarray(in_graph, dtype=bool)).tobytes(),
             json.dumps(meta), now, now, now))
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> dict | None:
        row = self._one(f"SELECT {', '.join(RUN_FIELDS)} FROM runs WHERE id=?", (run_id,))
        return _run(row) if row else None

    def list_runs(self, limit: int = 50, offset: int = 0) -> tuple[list[dict], int]:
        """(runs newest first without cfg and meta, total count)."""
        rows = self._all(f"SELECT {', '.join(SUMMARY_FIELDS)} FROM runs ORDER BY created_at DESC LIMIT ? OFFSET ?",
                         (limit, offset))
        return [_run(r) for r in rows], self._one("SELECT count(*) FROM runs")[0]

    def runs_of_dataset(self, ds_id: str) -> list[dict]:
        return [dict(r) for r in self._all("SELECT id, status FROM runs WHERE dataset_id=?", (ds_id,))]

    def rename_run(self, run_id: str, name: str | None) -> bool:
        return self._exec("UPDATE runs SET name=? WHERE id=?", (name, run_id)) == 1

    def delete_run(self, run_id: str) -> bool:
        """Delete a run (False if there is none); InUse while it is queued or running."""
        with self._lock, self._db:
            row = self._db.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                return False
            if row["status"] in ACTIVE:
                raise InUse(row["status"])
            return self._db.execute("DELETE FROM runs WHERE id=?", (run_id,)).rowcount == 1

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

    def save_scores(self, run_id: str, *, cfg: dict, scores: np.ndarray, warnings: list[str]) -> None:
        """Store a run's scores (one per graph edge): from now on it is `scored`."""
        self._exec("UPDATE runs SET cfg=?, n_edges=?, scores=?, warnings=?, scored=1 WHERE id=?",
                   (json.dumps(cfg), len(scores), _blob(scores), json.dumps(warnings), run_id))

    def set_curve(self, run_id: str, points: list[dict]) -> None:
        self._exec("UPDATE runs SET curve=? WHERE id=?", (json.dumps(points), run_id))

    def finish(self, run_id: str, status: str, *, error: str | None = None, warnings: list[str] | None = None,
               curve_complete: bool = False) -> None:
        """The end of a run: its final status (done runs show progress 1)."""
        sql = "UPDATE runs SET status=?, error=?, finished_at=?, curve_complete=?, stage=NULL"
        args: list = [status, error, time.time(), int(curve_complete)]
        if status == "done":
            sql += ", progress=1"
        if warnings is not None:
            sql += ", warnings=?"
            args.append(json.dumps(warnings))
        self._exec(sql + " WHERE id=?", args + [run_id])

    def get_scores(self, run_id: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(scores float64 [n_edges], in_graph bool [n_edges] or None) of a scored run."""
        row = self._one("SELECT scores, in_graph, n_edges FROM runs WHERE id=?", (run_id,))
        if row is None or row["scores"] is None:
            return None, None
        scores = np.frombuffer(row["scores"], dtype="<f8")
        mask = None
        if row["in_graph"] is not None:
            mask = np.unpackbits(np.frombuffer(row["in_graph"], dtype=np.uint8))[: row["n_edges"]].astype(bool)
        return scores, mask

    def set_mib(self, run_id: str, mib: dict) -> None:
        self._exec("UPDATE runs SET mib=? WHERE id=?", (json.dumps(mib), run_id))

    def get_mib(self, run_id: str) -> dict | None:
        """A run's MIB scores (CPR, CMD, points), or None until computed."""
        row = self._one("SELECT mib FROM runs WHERE id=?", (run_id,))
        return json.loads(row["mib"]) if row and row["mib"] else None

    def get_curve(self, run_id: str) -> list:
        row = self._one("SELECT curve FROM runs WHERE id=?", (run_id,))
        return json.loads(row["curve"]) if row and row["curve"] else []


def _blob(scores: np.ndarray) -> bytes:
    return np.ascontiguousarray(scores, dtype="<f8").tobytes()


def _dataset(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["has_answers"] = bool(d["has_answers"])
    for key in ("preview", "warnings"):
        if key in d:
            d[key] = json.loads(d[key])
    return d


def _run(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["warnings"] = json.loads(d["warnings"] or "[]")
    d["scored"], d["curve_complete"] = bool(d["scored"]), bool(d["curve_complete"])
    if "meta" in d:
        d["meta"] = json.loads(d["meta"] or "{}")
        d["cfg"] = json.loads(d["cfg"]) if d["cfg"] else None
    return d
