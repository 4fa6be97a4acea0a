#!/usr/bin/env python3
"""tests/tls_probe.py — a raw TLS peer for tests/tls_refuse_test.sh (python3
standard library only: ssl, socket).

usage: tls_probe.py MODE HOST PORT CA CERT KEY [COUNT]
  hangup  COUNT times (default 100) a peer with a valid certificate that
          completes the TLS handshake and hangs up (TCP reset) during the SP
          header exchange: every other time right after sending its Finished
          message (the coordinator's handshake is complete, its SP header
          meets a reset connection), otherwise after reading the
          coordinator's SP header and sending half of its own. nng 1.5.2 can
          report such a peer to its listener as NNG_ECLOSED, which stops that
          listener for good (nng issue #1518); a hundred tries do it reliably.
  req     connect, complete the handshake and the SP header exchange, send
          one request (a body that is no fedlora envelope: the coordinator
          answers it with a Reject) and wait up to 3 s for the reply: exit 0
          if one came, 1 otherwise. The header exchange alone proves nothing:
          nng's TLS transport completes it on its own and queues the
          connection while its listener is stuck.
Does not: speak fedlora, or check the server's name (the fedlora client
does that).
"""
import socket
import ssl
import struct
import sys

REQ0 = bytes([0, ord("S"), ord("P"), 0, 0, 0x30, 0, 0])
REP0 = bytes([0, ord("S"), ord("P"), 0, 0, 0x31, 0, 0])


def context(ca, cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(ca)
    ctx.check_hostname = False
    ctx.load_cert_chain(cert, key)
    return ctx


def reset(s):
    """Closes s with a TCP reset (SO_LINGER 0) instead of a FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def recv_n(s, n):
    got = b""
    while len(got) < n:
        b = s.recv(n - len(got))
        if not b:
            raise ValueError("connection closed after %d of %d bytes" % (len(got), n))
        got += b
    return got


def hangup_after_finished(ctx, host, port):
    """Drives the handshake through memory buffers, so the peer can send its
    Finished and reset the connection without waiting for the server's."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_side=False)
    s = socket.create_connection((host, port), timeout=5)
    flights = 0
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            data = out.read()
            if data:
                s.sendall(data)
                flights += 1
            if flights == 2:  # ClientHello, then Certificate .. Finished
                break
            b = s.recv(65536)
            if not b:
                break
            inc.write(b)
    reset(s)


def hangup_in_header(ctx, host, port):
    s = ctx.wrap_socket(socket.create_connection((host, port), timeout=5))
    recv_n(s, 8)  # the coordinator's SP header
    s.sendall(REQ0[:4])
    reset(s)


def main(argv):
    if len(argv) < 7:
        sys.stderr.write(__doc__)
        return 2
    mode, host, port = argv[1], argv[2], int(argv[3])
    ctx = context(argv[4], argv[5], argv[6])
    if mode == "hangup":
        for i in range(int(argv[7]) if len(argv) > 7 else 100):
            try:
                (hangup_after_finished if i % 2 == 0 else hangup_in_header)(ctx, host, port)
            except (OSError, ValueError):
                pass  # a stuck listener, a reset: go on
        return 0
    if mode == "req":
        try:
            s = ctx.wrap_socket(socket.create_connection((host, port), timeout=3))
            body = struct.pack(">I", 0x80000001) + b"ping"  # REQ0 request id, body
            s.sendall(REQ0 + struct.pack(">Q", len(body)) + body)
            if recv_n(s, 8) != REP0:
                return 1
            recv_n(s, 8)  # the reply's length: a reply came
            s.close()
        except (OSError, ValueError) as e:
            sys.stderr.write("tls_probe: no reply: %s\n" % e)
            return 1
        return 0
    sys.stderr.write("tls_probe: unknown mode %s\n" % mode)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
