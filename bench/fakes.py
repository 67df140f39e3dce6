#!/usr/bin/env python3
"""Loopback fake services for bench/scale: N targets of mixed kinds, one per 127.1.x.y address.

Writes a custodian test file whose `otherwise` text records the expected verdict, then serves
until killed. With a fourth argument KIND, every target is of that one kind (for per-protocol
figures). With ONE_ADDRESS set (an IP), every target is on that one address, each on its own
port from 20000 up. Only binds loopback addresses.
"""
import asyncio
import os
import sys

PORT = 7000
ONE_ADDRESS = os.environ.get("ONE_ADDRESS")
KINDS = ["ssh", "smtp", "http", "tcp", "http-wrong", "refused", "ssh", "smtp", "http", "tcp",
         "ssh", "smtp", "http", "tcp", "ssh", "smtp", "http", "tcp", "ssh", "hung"]


def addr(i):
    return ONE_ADDRESS or f"127.1.{i // 250}.{i % 250 + 1}"


def port(i):
    return 20000 + i if ONE_ADDRESS else PORT


async def ssh(reader, writer):
    writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n")
    await writer.drain()
    await reader.read(256)
    writer.close()


async def smtp(reader, writer):
    writer.write(b"220 bench.invalid ESMTP\r\n")
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            break
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            writer.write(b"250-bench.invalid\r\n250 PIPELINING\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            break
        else:
            writer.write(b"250 ok\r\n")
        await writer.drain()
    writer.close()


def http(body):
    async def handler(reader, writer):
        while True:
            line = await reader.readline()
            if not line or line in (b"\r\n", b"\n"):
                break
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()
    return handler


def line_protocol(greeting, answers):
    """A fake that greets, then answers each line by its first word; ends on QUIT/LOGOUT."""
    async def handler(reader, writer):
        writer.write(greeting)
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                break
            words = line.split()
            verb = words[-1].upper() if words and words[-1].upper() == b"LOGOUT" else (words[0].upper() if words else b"")
            answer = answers.get(verb.decode(errors="replace"), answers.get("*", b""))
            writer.write(answer)
            await writer.drain()
            if verb in (b"QUIT", b"LOGOUT", b"#LIST"):
                break
        writer.close()
    return handler


async def tcp(reader, writer):
    writer.close()


async def hung(reader, writer):
    await asyncio.sleep(3600)


HANDLERS = {
    "imap": line_protocol(b"* OK IMAP4rev1 ready\r\n", {"LOGOUT": b"* BYE bye\r\na2 OK LOGOUT done\r\n"}),
    "pop3": line_protocol(b"+OK POP3 ready\r\n", {"QUIT": b"+OK bye\r\n"}),
    "ftp": line_protocol(b"220 FTP ready\r\n", {"QUIT": b"221 bye\r\n"}),
    "nntp": line_protocol(b"200 news ready\r\n", {"QUIT": b"205 bye\r\n"}),
    "redis": line_protocol(b"", {"PING": b"+PONG\r\n", "QUIT": b"+OK\r\n"}),
    "rsync": line_protocol(b"@RSYNCD: 31.0\n", {"@RSYNCD:": b"", "#LIST": b"@RSYNCD: EXIT\n"}),
    "vnc": line_protocol(b"RFB 003.008\n", {}),"ssh": ssh, "smtp": smtp, "http": http(b"custodian-bench-ok\n"),
            "http-wrong": http(b"something else\n"), "tcp": tcp, "hung": hung}


def line(i, kind):
    a, p = addr(i), port(i)
    if kind in ("imap", "pop3", "ftp", "nntp", "redis", "rsync", "vnc", "ssh", "smtp", "tcp"):
        return f"{a} must run {kind} on {p} otherwise 'expect-pass'."
    if kind == "http":
        return f"http://{a}:{p}/ must run http with content 'custodian-bench-ok' otherwise 'expect-pass'."
    if kind == "http-wrong":
        return f"http://{a}:{p}/ must run http with content 'custodian-bench-ok' otherwise 'expect-fail'."
    if kind == "refused":
        return f"{a} must run tcp on {p} otherwise 'expect-fail'."
    return f"{a} must run ssh on {p} otherwise 'expect-fail'."  # hung


async def main(n, test_file, ready_file, only=None):
    servers = []
    with open(test_file, "w") as f:
        for i in range(n):
            kind = only or KINDS[i % len(KINDS)]
            f.write(line(i, kind) + "\n")
            if kind != "refused":
                servers.append(await asyncio.start_server(HANDLERS[kind], addr(i), port(i), backlog=64))
    open(ready_file, "w").write("ready\n")
    await asyncio.sleep(3600 * 24)


if __name__ == "__main__":
    only = sys.argv[4] if len(sys.argv) > 4 else None
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], only))
