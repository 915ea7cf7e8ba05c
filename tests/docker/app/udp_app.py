"""A user's UDP client: send MESSAGE from SPORT to TARGET until a reply, write it to OUT.

usage: udp_app.py client HOST:PORT   (env: MESSAGE, SPORT, OUT)
Then it stays up, as a long-running app in a container would.
"""

import json
import os
import socket
import sys
import time


def main() -> int:
    mode, target = sys.argv[1], sys.argv[2]
    assert mode == "client", mode
    host, port = target.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", int(os.environ.get("SPORT", "0"))))
    sock.settimeout(0.2)
    message = os.environ.get("MESSAGE", "hello").encode()
    result = {"reply": None, "sent": 0}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sock.sendto(message, (host, int(port)))
        result["sent"] += 1
        try:
            data, peer = sock.recvfrom(2048)
        except socket.timeout:
            continue
        result.update(reply=data.decode(), peer=f"{peer[0]}:{peer[1]}")
        break
    out = os.environ.get("OUT", "/out/result.json")
    with open(out + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(out + ".tmp", out)
    print(json.dumps(result), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
