"""Redis commands packed into the bytes of the protocol (RESP), many at a time.

Pure. redis-py packs each argument through several generic calls; a bulk write of
100,000 items has half a million arguments, so here text arguments are laid out in one
string and encoded once. The bytes are what redis-py itself sends for the same command
with its default encoder (UTF-8, strict).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Arg = str | bytes | int


class _NotText(Exception):
    pass


def _text_arg(arg: Arg) -> str:
    if isinstance(arg, str):
        size = len(arg) if arg.isascii() else len(arg.encode())
        return f"${size}\r\n{arg}\r\n"
    if isinstance(arg, bytes):
        raise _NotText
    text = _number(arg)
    return f"${len(text)}\r\n{text}\r\n"


def _bytes_arg(arg: Arg) -> bytes:
    if isinstance(arg, str):
        data = arg.encode()
    elif isinstance(arg, bytes):
        data = arg
    else:
        data = _number(arg).encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


def _number(arg: object) -> str:
    if isinstance(arg, bool) or not isinstance(arg, int):
        raise TypeError(f"a Redis argument is text, bytes or an int, not {type(arg).__name__}")
    return repr(arg)


def command(args: Sequence[Arg]) -> bytes:
    """One command, e.g. `command(["HSET", key, "0", "{...}"])`."""
    if not args:
        raise ValueError("a Redis command needs at least its name")
    name = args[0]
    # "CONFIG GET" is two words: redis-py sends them as two arguments.
    if (isinstance(name, str) and " " in name) or (isinstance(name, bytes) and b" " in name):
        args = [*name.split(), *args[1:]]
    try:
        # ASCII text, the usual case, inline: a bulk write has half a million of them.
        text = "".join(
            [
                f"${len(arg)}\r\n{arg}\r\n"
                if type(arg) is str and arg.isascii()
                else _text_arg(arg)
                for arg in args
            ]
        )
    except _NotText:
        return b"*%d\r\n" % len(args) + b"".join([_bytes_arg(arg) for arg in args])
    return f"*{len(args)}\r\n{text}".encode()


def commands(batch: Iterable[Sequence[Arg]]) -> bytes:
    """Several commands, to be sent in one write."""
    return b"".join([command(args) for args in batch])
