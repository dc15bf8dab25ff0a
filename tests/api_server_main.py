"""Serve the app on the tiny test catalog in a real uvicorn process (used by the API tests):

    python tests/api_server_main.py PORT TMP_DIR [SETTINGS_JSON] [LOG_LEVEL]

SETTINGS_JSON overrides Settings fields (e.g. '{"token": "t"}'). Fault injection: while the file
TMP_DIR/store-fault exists, every store write raises sqlite3.OperationalError("database or disk is
full"), as a full disk does; reads still work.
"""
import json
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import uvicorn  # noqa: E402
from api_support import settings  # noqa: E402

from edgewise.server import create_app  # noqa: E402


def inject_store_faults(store, flag: Path) -> None:
    write = store._exec

    def faulty(sql, args=()):
        if flag.exists():
            raise sqlite3.OperationalError("database or disk is full")
        return write(sql, args)

    store._exec = faulty


if __name__ == "__main__":
    torch.set_num_threads(1)
    port, tmp = int(sys.argv[1]), Path(sys.argv[2])
    overrides = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    app = create_app(settings(tmp, **overrides))
    inject_store_faults(app.state.ctx.store, tmp / "store-fault")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level=sys.argv[4] if len(sys.argv) > 4 else "warning")
