"""Serving the explorer: a threaded WSGI server on a local address (thumbnails load in parallel)."""
import errno
import logging
import socket
import threading

from werkzeug.serving import make_server

from utils.errors import UserError


def start_server(app, host="127.0.0.1", port=8050):
    """A server for the Dash ``app`` on ``host:port`` (port 0: any free one), not yet serving."""
    # one log line per thumbnail request would bury what matters; errors still reach the terminal
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    listener = _listen(host, port)  # ours: werkzeug would print its own message and exit on a busy port
    try:
        return make_server(host, port, app.server, threaded=True, fd=listener.fileno())
    finally:
        listener.close()  # the server holds its own duplicate of the socket


def _listen(host, port):
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        return socket.create_server(address, family=family)
    except socket.gaierror as err:
        raise UserError(f"--host {host}: not a known address ({err.strerror})") from None
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use; pass --port with a free one") from None
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror})") from None


def url_of(server):
    return f"http://{server.host}:{server.port}"


class BackgroundServer:
    """The app served from a thread (tests, screenshots, benchmarks): ``with BackgroundServer(app) as url:``."""

    def __init__(self, app, host="127.0.0.1", port=0):
        self.server = start_server(app, host, port)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return url_of(self.server)

    def __enter__(self):
        self.thread.start()
        return self.url

    def __exit__(self, *exc):
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()
