"""Benchmark: sealing and opening a 4 KiB note through our API vs raw AES-GCM, side by side.

    python bench/crypto.py [--rounds 20000]

A. raw `AESGCM.encrypt` + `decrypt` of 4 KiB with a random nonce (the floor);
B. `crypto.seal` + `crypto.open_sealed` with the data key taken from a warm `DataKeyCache`
   (header, AAD binding field/row/subject, key lookup by the id in the header);
C. the same with a cold cache: the data key unwrapped from its wrapped form by the keyring first.
Prints B/A (target <= 1.5) and C/A. Times are medians of 5 runs; ratios are what to compare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.envelope import DataKeyCache, create_data_key, unwrap_data_key
from crypto.field import open_sealed, seal
from crypto.keyring import LocalKeyring


def timed(work, rounds: int) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        work(rounds)
        runs.append((time.perf_counter() - started) / rounds * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--size", type=int, default=4096, help="plaintext bytes (default 4 KiB)")
    args = parser.parse_args()
    note = os.urandom(args.size)
    keyring = LocalKeyring.generate()
    subject, row = uuid.uuid4(), uuid.uuid4()
    key, wrapped = create_data_key(keyring, subject_id=subject, retention_class="case_content")
    cache = DataKeyCache(ttl_seconds=3600, max_size=1024)
    cache.put(key)
    raw = AESGCM(key.material)
    aad = b"case_note.body" + row.bytes + subject.bytes

    def bare(n: int) -> None:
        for _ in range(n):
            nonce = os.urandom(12)
            raw.decrypt(nonce, raw.encrypt(nonce, note, aad), aad)

    def ours_warm(n: int) -> None:
        for _ in range(n):
            blob = seal(cache.get(key.id), note, field_id="case_note.body", row_id=row, subject_id=subject)  # type: ignore[arg-type]
            open_sealed(cache.get, blob, field_id="case_note.body", row_id=row, subject_id=subject)  # type: ignore[arg-type]

    def ours_cold(n: int) -> None:
        for _ in range(n):
            fresh = unwrap_data_key(
                keyring, wrapped, data_key_id=key.id, subject_id=subject, retention_class="case_content"
            )
            blob = seal(fresh, note, field_id="case_note.body", row_id=row, subject_id=subject)
            open_sealed(fresh, blob, field_id="case_note.body", row_id=row, subject_id=subject)

    try:
        a = timed(bare, args.rounds)
        b = timed(ours_warm, args.rounds)
        c = timed(ours_cold, args.rounds)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    print(f"{args.size:,}-byte seal+open, median of 5 x {args.rounds:,} rounds (µs per round trip)")
    print(f"A raw AESGCM:                 {a:7.2f}")
    print(f"B ours, warm data-key cache:  {b:7.2f}   B/A = {b / a:.2f}  (target <= 1.5)")
    print(f"C ours, cold (unwrap first):  {c:7.2f}   C/A = {c / a:.2f}")


if __name__ == "__main__":
    main()
