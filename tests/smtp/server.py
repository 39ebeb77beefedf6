#!/usr/bin/python3
"""A real SMTP server for kafka-healing's integration tests (aiosmtpd).

Each accepted message is written as OUT/NNNN.eml (the raw DATA, as received) and
OUT/NNNN.json ({"mail_from", "rcpt_tos", "peer", "tls", "tls_version", "auth_user"}).
Prints `ready` on standard output once listening, then runs until killed.

Options:
  --port N                 port to listen on (127.0.0.1)
  --out DIR                where received messages are written
  --starttls-cert PEM      offer STARTTLS with this certificate chain ...
  --starttls-key PEM       ... and key, and require it before MAIL
  --implicit-tls           wrap the listener in TLS (needs the cert/key options too)
  --auth USER:PASS         require AUTH (PLAIN/LOGIN); other credentials get 535
  --reject-rcpt ADDR       answer 550 to RCPT TO this address (repeatable)
"""

import argparse
import json
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Handler:
    def __init__(self, out, reject):
        self.out = out
        self.reject = {r.lower() for r in reject}
        self.lock = threading.Lock()
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        ssl_object = None
        if server.transport is not None:
            ssl_object = server.transport.get_extra_info("ssl_object")
        auth_user = None
        if isinstance(session.auth_data, LoginPassword):
            auth_user = session.auth_data.login.decode("utf-8", "replace")
        with self.lock:
            self.count += 1
            n = self.count
        base = os.path.join(self.out, f"{n:04d}")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "peer": list(session.peer) if session.peer else None,
            "tls": ssl_object is not None,
            "tls_version": ssl_object.version() if ssl_object is not None else None,
            "auth_user": auth_user,
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 Message accepted for delivery"


def make_authenticator(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticate


def main():
    p = argparse.ArgumentParser(description="SMTP test server (aiosmtpd)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--starttls-cert")
    p.add_argument("--starttls-key")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--auth", metavar="USER:PASS")
    p.add_argument("--reject-rcpt", action="append", default=[])
    a = p.parse_args()

    os.makedirs(a.out, exist_ok=True)
    context = None
    if a.starttls_cert or a.starttls_key:
        if not (a.starttls_cert and a.starttls_key):
            p.error("--starttls-cert and --starttls-key go together")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.starttls_cert, a.starttls_key)
    if a.implicit_tls and context is None:
        p.error("--implicit-tls needs --starttls-cert and --starttls-key")

    kwargs = {}
    if a.implicit_tls:
        kwargs["ssl_context"] = context
    elif context is not None:
        kwargs["tls_context"] = context
        kwargs["require_starttls"] = True
    if a.auth:
        user, sep, password = a.auth.partition(":")
        if not sep:
            p.error("--auth takes USER:PASS")
        kwargs["authenticator"] = make_authenticator(user, password)
        kwargs["auth_required"] = True
        # aiosmtpd only knows about STARTTLS; a listener wrapped in TLS is encrypted too.
        kwargs["auth_require_tls"] = not a.implicit_tls and context is not None

    controller = Controller(
        Handler(a.out, a.reject_rcpt),
        hostname="127.0.0.1",
        port=a.port,
        server_hostname="smtp.test",
        **kwargs,
    )
    controller.start()
    print("ready", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
