"""An SMTP sink for the email tests, on aiosmtpd.

    smtp_sink.py PORT MODE [CERT KEY]

MODE is `plain` (no TLS, no auth), `starttls` (STARTTLS and AUTH required)
or `tls` (TLS from the first byte, AUTH required). The login is
aftercare / s3cret. Prints READY when listening, then each message as

    MAIL <login>
    <the message, as received>
    END MAIL
"""
import asyncio
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Print:
    async def handle_DATA(self, server, session, envelope):
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else "-"
        body = envelope.original_content or envelope.content
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        print(f"MAIL {login}\n{body.rstrip()}\nEND MAIL", flush=True)
        return "250 OK"


def check(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"aftercare", b"s3cret")
    return AuthResult(success=ok, auth_data=auth_data)


async def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    kw = {}
    if mode != "plain":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        kw = {"authenticator": check, "auth_required": True}
        if mode == "starttls":
            kw.update(tls_context=ctx, require_starttls=True)
        else:
            kw.update(ssl_context=ctx, auth_require_tls=False)
    c = Controller(Print(), hostname="127.0.0.1", port=port, server_hostname="localhost", **kw)
    c.start()
    print("READY", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
