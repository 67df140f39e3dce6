#!/usr/bin/env python3
"""A plain asyncio checker for bench/perf: the wire work of each target in a TSV list written by
`custodian-bench gen-checks` (action, address, port, pass|fail, argument), IN_FLIGHT at once
(default 512), each with a TIMEOUT (default 5 s). Prints the verdict counts and how many match.

usage: checker.py TSV [IN_FLIGHT] [TIMEOUT]
"""
import asyncio
import sys


async def probe(action, addr, port, arg):
    reader, writer = await asyncio.open_connection(addr, port)
    try:
        if action == "banner":
            line = await reader.readline()
            return line.startswith(arg.encode())
        if action == "smtp":
            line = await reader.readline()
            if not line.startswith(b"220"):
                return False
            writer.write(b"EHLO checker.invalid\r\nQUIT\r\n")
            await writer.drain()
            return (await reader.read(65536)).startswith(b"250")
        writer.write(f"GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        body = await reader.read(65536)
        return body.startswith(b"HTTP/1.1 200") and arg.encode() in body
    finally:
        writer.close()


async def main(path, in_flight, timeout):
    targets = [line.rstrip("\n").split("\t") for line in open(path)]
    queue = iter(targets)
    passed = correct = 0

    async def worker():
        nonlocal passed, correct
        for action, addr, port, expect, arg in queue:
            try:
                ok = await asyncio.wait_for(probe(action, addr, int(port), arg), timeout)
            except (OSError, asyncio.TimeoutError):
                ok = False
            passed += ok
            correct += ok == (expect == "pass")

    await asyncio.gather(*(worker() for _ in range(min(in_flight, len(targets)))))
    n = len(targets)
    print(f"python: targets {n} passed {passed} failed {n - passed} correct {correct} of {n}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 512,
                     float(sys.argv[3]) if len(sys.argv) > 3 else 5.0))
