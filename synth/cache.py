"""The request cache: SQLite, one row per generated sample.

Key: sha256 over (backend, model fingerprint, template hash, sampling params, seed doc id,
sample index, prompt hash). A generation job writes each batch of completions as soon as the
engine returns it (one transaction per batch), so a killed job resumes by generating only
what is missing, and a rerun of a finished job generates nothing. The prompt hash is in the key
too, so changing a task's inputs (``max_chars``, a constitution) can never return a stale text.

WAL mode and a busy timeout let several worker processes share one file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from synth.backends import Completion

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    template_hash TEXT NOT NULL,
    seed_doc_id TEXT NOT NULL,
    sample INTEGER NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL
)
"""


def request_key(backend: str, model: str, template_hash: str, params: dict[str, Any], seed_doc_id: str,
                sample: int, prompt: Any) -> str:
    blob = json.dumps([backend, model, template_hash, params, seed_doc_id, sample,
                       hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()],
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class RequestCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(_SCHEMA)

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        out: dict[str, Completion] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                q = f"SELECT key, text, prompt_tokens, completion_tokens, finish_reason FROM completions WHERE key IN ({','.join('?' * len(part))})"
                for k, text, pt, ct, fr in self.db.execute(q, part):
                    out[k] = Completion(text, pt, ct, fr)
        return out

    def put_many(self, rows: list[tuple[str, str, str, str, int, Completion]]) -> None:
        """(key, model, template_hash, seed_doc_id, sample, completion) rows, in one transaction."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany(
                    "INSERT OR REPLACE INTO completions VALUES (?,?,?,?,?,?,?,?,?)",
                    [(k, m, t, d, s, c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) for k, m, t, d, s, c in rows],
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def count(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def close(self) -> None:
        self.db.close()
