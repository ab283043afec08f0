"""A socketserver.ThreadingTCPServer echo: a thread per connection.

    python3 echo_server.py PORT

Prints "listening port=PORT" once it listens; SIGTERM ends it (exit 0).
"""
import signal
import socketserver
import sys


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 4096


def main():
    port = int(sys.argv[1])
    srv = Server(("127.0.0.1", port), Echo)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening port={port}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.5)
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
