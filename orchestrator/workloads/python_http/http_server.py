"""testbed's python-http server: a small Python program that calls socket/listen and answers HTTP.

uKontainer measures the cold start of such a program: the interpreter starting, importing
socket, binding and listening, then answering. It uses only the socket module, so images hold
the interpreter and the handful of modules it imports (`--modules` prints their files).

    python3.11 -S -I http_server.py PORT     serve: any GET gets 200 and BODY, then the connection closes
    python3.11 -S -I http_server.py --modules
"""

import socket
import sys

BODY = b"testbed python-http ready\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % len(BODY)) + BODY
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def module_files():
    """Files of every module loaded so far that is neither built in nor frozen."""
    for module in list(sys.modules.values()):
        spec = getattr(module, "__spec__", None)
        origin = getattr(spec, "origin", None)
        if origin and origin.startswith("/"):
            yield origin


def answer(conn):
    conn.settimeout(5.0)
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    conn.sendall(RESPONSE if data.startswith(b"GET ") else BAD)


def serve(port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(128)
    while True:
        conn, _ = listener.accept()
        try:
            answer(conn)
        except OSError:
            pass
        finally:
            conn.close()


def main(argv):
    if argv[1:] == ["--modules"]:
        for path in sorted(set(module_files())):
            print(path)
        return 0
    if len(argv) != 2 or not argv[1].isdigit():
        sys.stderr.write("usage: http_server.py PORT | --modules\n")
        return 2
    serve(int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
