"""The two primitives the transport needs, in an async and a blocking flavour;
`scripts/unasync.py` turns `AsyncLock`/`async_sleep` into `Lock`/`sync_sleep`."""

from __future__ import annotations

import asyncio
import threading
import time

AsyncLock = asyncio.Lock
Lock = threading.Lock
async_sleep = asyncio.sleep
sync_sleep = time.sleep
