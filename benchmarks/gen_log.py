"""Write a realistic access log of a given size (default 500 MB) for the benchmarks.

python benchmarks/gen_log.py benchmarks/data/access.log 500
"""

from __future__ import annotations

import random
import sys

PATHS = ["/", "/api/v1/orders", "/api/v1/users/1234", "/static/app.js", "/health", "/login", "/search?q=shipping"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5.0", "kube-probe/1.30", "Go-http-client/1.1"]


def main(path: str, megabytes: int) -> None:
    rng = random.Random(42)
    target = megabytes * 1_000_000
    written = 0
    n = 0
    with open(path, "w") as fh:
        while written < target:
            lines = []
            for _ in range(10_000):
                n += 1
                lines.append(
                    f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)} - - "
                    f"[22/Nov/2026:01:{n // 60000 % 60:02d}:{n // 1000 % 60:02d} +0000] "
                    f'"GET {rng.choice(PATHS)} HTTP/1.1" {rng.choice((200, 200, 200, 304, 404, 500))} '
                    f'{rng.randrange(100000)} seq={n} "{rng.choice(AGENTS)}"\n'
                )
            block = "".join(lines)
            fh.write(block)
            written += len(block)
    print(f"{path}: {written / 1e6:.0f} MB, {n} lines, {written / n:.0f} bytes/line")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 500)
