"""Serve the app on the tiny test catalog in a real uvicorn process (used by test_api_server.py):

    python tests/api_server_main.py PORT TMP_DIR
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import uvicorn  # noqa: E402
from api_support import settings  # noqa: E402

from edgewise.server import create_app  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    port, tmp = int(sys.argv[1]), Path(sys.argv[2])
    uvicorn.run(create_app(settings(tmp)), host="127.0.0.1", port=port, log_level="warning")
