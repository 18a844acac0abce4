"""A local SMTP relay for the delivery benchmark: aiosmtpd in a process of its own (so that the
bench's own Python does not share its GIL), enforcing SMTP's line limit like a real relay,
counting what it accepts.

``python -m bench.smtp_sink PORT COUNT_FILE``: listens on 127.0.0.1:PORT; after each accepted
message, the count is written to COUNT_FILE (read by the bench, which never trusts the sender's
word alone). Stops on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from aiosmtpd.controller import Controller


class Counter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.accepted = 0
        self.path.write_text("0")

    async def handle_DATA(self, _server, _session, _envelope):
        self.accepted += 1
        self.path.write_text(str(self.accepted))
        return "250 OK"


def main() -> None:
    port, count_file = int(sys.argv[1]), Path(sys.argv[2])
    controller = Controller(Counter(count_file), hostname="127.0.0.1", port=port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
