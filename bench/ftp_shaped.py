#!/usr/bin/env python3
"""An anonymous, read-only FTP server (pyftpdlib) whose every data
connection sends at most RATE bytes per second: an FTP link shaped per
connection, for bench/segments.sh. A TCP relay cannot shape FTP, whose
data connections go to ports the server names; vsftpd's anon_max_rate
paces loosely (one stream got 9 MB/s of a 4 MB/s limit).

    /usr/bin/python3 ftp_shaped.py ROOT PORT RATE PASV_LOW
"""
import logging
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, ThrottledDTPHandler
from pyftpdlib.servers import FTPServer

root, port, rate, low = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
logging.basicConfig(level=logging.WARNING)


class Shaped(ThrottledDTPHandler):
    write_limit = rate
    read_limit = rate


auth = DummyAuthorizer()
auth.add_anonymous(root)
FTPHandler.authorizer = auth
FTPHandler.dtp_handler = Shaped
FTPHandler.passive_ports = range(low, low + 200)
FTPHandler.use_gmt_times = True
FTPServer(("127.0.0.1", port), FTPHandler).serve_forever()
