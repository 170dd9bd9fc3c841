"""The bare reference for bench.enqueue: parse the CSV, dump a JSON body per row, and push
one message per row to a Redis list in pipelined chunks. Nothing else."""

from __future__ import annotations

import csv
import json
import sys

import redis


def main(path: str, url: str, queue: str) -> None:
    client = redis.Redis.from_url(url)
    chunk: list[str] = []
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        for cells in reader:
            row = dict(zip(header, cells, strict=False))
            body = {k: v for k, v in row.items() if v and k != "id"}
            chunk.append(json.dumps({"id": row["id"], "body": body}))
            if len(chunk) == 1000:
                client.lpush(queue, *chunk)
                chunk = []
    if chunk:
        client.lpush(queue, *chunk)


if __name__ == "__main__":
    main(*sys.argv[1:4])
