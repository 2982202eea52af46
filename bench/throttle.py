#!/usr/bin/env python3
"""A loopback TCP relay that passes at most RATE bytes per second in each
direction of each connection: a link shaped per connection, as partners'
firewalls and long fat pipes are. For bench/segments.sh.

    throttle.py LISTEN_PORT UPSTREAM_PORT RATE
"""
import socket
import sys
import threading
import time


def pace(src, dst, rate):
    began = time.monotonic()
    sent = 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            sent += len(data)
            wait = sent / rate - (time.monotonic() - began)
            if wait > 0:
                time.sleep(wait)
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    listen_port, upstream_port, rate = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", listen_port))
    listener.listen(64)
    while True:
        client, _ = listener.accept()
        try:
            server = socket.create_connection(("127.0.0.1", upstream_port))
        except OSError:
            client.close()
            continue
        for a, b in ((client, server), (server, client)):
            threading.Thread(target=pace, args=(a, b, rate), daemon=True).start()


if __name__ == "__main__":
    main()
