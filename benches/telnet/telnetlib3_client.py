"""The telnet benchmark's reference client: Python's telnetlib3 doing what
Tether's `telnet` transport does, on the same server, in the same run.

It logs in (the login and password prompts), prepares the shell as Tether
does (`stty -echo -opost -icanon`, `exec sh`, a probe until the new shell
answers), then frames each command between markers and reads its exact
output and its exit status, either with the very line Tether sends
(`tether` framing):

    printf '\\036B<token>\\037\\n'; sh -c '<command>' </dev/null 2>&1; printf '\\036E<token> %d\\037\\n' "$?"

or without the begin marker and the `sh -c` (`minimal` framing), what a
hand-written script might send:

    { <command>; } </dev/null 2>&1; printf '\\036E<token> %d\\037\\n' "$?"

Modes (after HOST PORT USER):

    warm N COMMAND
        N commands with each framing on one session, each preceded by one
        untimed; every output is checked against the first, and the exit
        status is 0. Prints {"count", "tether": {"seconds", "output"},
        "minimal": {...}}.
    cat FILE HASH
        streams `cat FILE` (tether framing), a chunk at a time, counting the
        bytes (and hashing them when HASH is 1); then the same `cat` again,
        read straight from the socket with no telnet decoding at all (the
        ceiling a client could reach on this server). Prints {"bytes",
        "seconds", "sha256", "maxrss_kib", "raw_seconds"}.
    once COMMAND
        one command, as a process: its output on stdout, its exit status.

The password comes from $TETHER_BENCH_PASSWORD, never from argv.
"""

import asyncio
import hashlib
import json
import os
import re
import resource
import shlex
import socket
import sys
import time

import telnetlib3

PROMPT = re.compile(rb"[#$>%] ?$")
PROBE_INTERVAL = 0.5
CHUNK = 1 << 20


async def read_until_end(reader, pattern, what, timeout=30.0):
    """Reads until `pattern` matches the end of what arrived; returns it all."""
    text = bytearray()
    deadline = time.monotonic() + timeout
    while not pattern.search(text):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {what} after {timeout} s: {bytes(text[-200:])!r}")
        chunk = await asyncio.wait_for(reader.read(4096), left)
        if not chunk:
            raise ConnectionError(f"connection closed waiting for {what}: {bytes(text[-200:])!r}")
        text += chunk
    return bytes(text)


async def connect(host, port, user, password):
    reader, writer = await telnetlib3.open_connection(host, port, encoding=False)
    await read_until_end(reader, re.compile(rb"ogin: ?$"), "login prompt")
    writer.write(user.encode() + b"\r\0")
    await read_until_end(reader, re.compile(rb"assword: ?$"), "password prompt")
    writer.write(password.encode() + b"\r\0")
    await read_until_end(reader, PROMPT, "shell prompt")
    # As Tether: no echo, no output processing, a non-interactive sh.
    writer.write(b"stty -echo -opost -icanon min 1 time 0 2>/dev/null; exec sh 2>/dev/null\r\0")
    token = os.urandom(8).hex()
    probe = f"trap : INT QUIT; printf '\\036R{token}\\037\\n'\r\0".encode()
    marker = f"\x1eR{token}\x1f\n".encode()
    while True:
        writer.write(probe)
        try:
            await asyncio.wait_for(reader.readuntil(marker), PROBE_INTERVAL)
            return reader, writer
        except asyncio.TimeoutError:
            continue


class Runner:
    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.counter = 0
        self.salt = os.urandom(4).hex()

    def token(self):
        self.counter += 1
        return f"P{self.counter:x}{self.salt}"

    def line(self, command, framing, token):
        """The framed line, and the begin marker (or None)."""
        end = f"printf '\\036E{token} %d\\037\\n' \"$?\""
        if framing == "tether":
            line = f"printf '\\036B{token}\\037\\n'; sh -c {shlex.quote(command)} </dev/null 2>&1; {end}"
            return line.encode() + b"\r\0", f"\x1eB{token}\x1f\n".encode()
        return f"{{ {command}; }} </dev/null 2>&1; {end}".encode() + b"\r\0", None

    def send(self, command, framing):
        """Writes the framed line; gives the begin marker (or None) and the end marker."""
        token = self.token()
        line, begin = self.line(command, framing, token)
        self.writer.write(line)
        return begin, f"\x1eE{token} ".encode()

    async def sync(self):
        """Drops whatever is still on its way (answers to a probe that was
        sent twice): the minimal framing has no begin marker to skip it."""
        token = self.token()
        self.writer.write(f"printf '\\036S{token}\\037\\n'\r\0".encode())
        await self.reader.readuntil(f"\x1eS{token}\x1f\n".encode())

    async def run(self, command, framing):
        """Runs `command`; gives its exact output and its exit status."""
        begin, end = self.send(command, framing)
        if begin is not None:
            await self.reader.readuntil(begin)
        output = await self.reader.readuntil(end)
        status = await self.reader.readuntil(b"\x1f\n")
        return output[: -len(end)], int(status[:-2])

    async def warm(self, command, framing, count):
        expected, status = await self.run(command, framing)
        if status != 0:
            raise RuntimeError(f"{command}: status {status}")
        started = time.perf_counter()
        for _ in range(count):
            output, status = await self.run(command, framing)
            if output != expected or status != 0:
                raise RuntimeError(f"{command}: {output!r}, status {status}")
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "output": expected.decode("latin-1")}

    async def stream(self, command, sink):
        """Runs `command`, handing its output to `sink` a chunk at a time as it
        arrives (the whole output is never held); gives its exit status."""
        begin, end = self.send(command, "tether")
        await self.reader.readuntil(begin)
        held = b""
        while True:
            chunk = await self.reader.read(CHUNK)
            if not chunk:
                raise ConnectionError("connection closed during the command")
            data = held + chunk
            at = data.find(end)
            if at >= 0:
                sink(data[:at])
                rest = data[at + len(end) :]
                while b"\x1f\n" not in rest:
                    rest += await self.reader.read(64)
                return int(rest[: rest.index(b"\x1f\n")])
            keep = len(end) - 1
            sink(data[: len(data) - keep])
            held = data[len(data) - keep :]

    def raw_stream(self, command):
        """Runs `command` and reads the socket itself, blocking, with no
        telnet decoding (IAC IAC stays doubled): only the end marker is
        looked for. Gives the exit status. The session is unusable after."""
        transport = self.writer.transport
        transport.pause_reading()
        sock = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        sock.setblocking(True)
        token = self.token()
        line, _ = self.line(command, "tether", token)
        sock.sendall(line.replace(b"\xff", b"\xff\xff"))
        end = f"\x1eE{token} ".encode()
        buffer = bytearray(CHUNK)
        tail = b""
        while True:
            n = sock.recv_into(buffer)
            if n == 0:
                raise ConnectionError("connection closed during the command")
            data = tail + bytes(buffer[max(0, n - 256) : n])
            at = data.find(end)
            if at >= 0:
                rest = data[at + len(end) :]
                while b"\x1f\n" not in rest:
                    rest += sock.recv(64)
                return int(rest[: rest.index(b"\x1f\n")])
            tail = data[-len(end) :]


async def main(argv):
    host, port, user, mode = argv[1], int(argv[2]), argv[3], argv[4]
    password = os.environ["TETHER_BENCH_PASSWORD"]
    reader, writer = await connect(host, port, user, password)
    runner = Runner(reader, writer)
    if mode == "warm":
        count, command = int(argv[5]), argv[6]
        report = {"count": count, "tether": await runner.warm(command, "tether", count)}
        await runner.sync()
        report["minimal"] = await runner.warm(command, "minimal", count)
        print(json.dumps(report))
    elif mode == "cat":
        path, want_hash = argv[5], argv[6] == "1"
        command = f"cat {shlex.quote(path)}"
        hasher = hashlib.sha256()
        got = 0

        def sink(data):
            nonlocal got
            got += len(data)
            if want_hash:
                hasher.update(data)

        started = time.perf_counter()
        status = await runner.stream(command, sink)
        seconds = time.perf_counter() - started
        if status != 0:
            raise RuntimeError(f"cat exited {status}")
        report = {"bytes": got, "seconds": seconds, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
        if want_hash:
            report["sha256"] = hasher.hexdigest()
        started = time.perf_counter()
        status = runner.raw_stream(command)
        report["raw_seconds"] = time.perf_counter() - started
        if status != 0:
            raise RuntimeError(f"raw cat exited {status}")
        print(json.dumps(report))
    elif mode == "once":
        output, status = await runner.run(argv[5], "tether")
        sys.stdout.buffer.write(output)
        sys.stdout.flush()
        writer.close()
        return status
    else:
        raise SystemExit(f"unknown mode {mode}")
    writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv)))
