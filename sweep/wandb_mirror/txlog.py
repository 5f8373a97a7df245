"""Read and rewrite a W&B run's transaction log (``run-ID.wandb``).

Why: an offline run tied to a locally generated sweep id cannot be uploaded as is (the server
answers "sweep not found" and drops the run), so ``wandb-sync`` uploads copies whose run
record names no sweep, then attaches them to a real sweep with ``prior_runs``.

Format (LevelDB's log, as wandb writes it): a 7-byte file header, then 32 KiB blocks of
records, each ``crc32 (4) | length (2) | type (1) | data``; a payload larger than what is
left of a block is split FIRST / MIDDLE... / LAST; a block tail under 7 bytes is zero padding.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

FILE_HEADER = struct.Struct("<4sHB")  # b":W&B", 0xBEE1, version
RECORD_HEADER = struct.Struct("<IHB")  # crc32, length, type
BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class TxLogError(ValueError):
    """Not a W&B transaction log, or a damaged one."""


def read_payloads(path: Path) -> tuple[bytes, list[bytes]]:
    """The file header and every record payload (each a serialized ``Record`` protobuf)."""
    blob = Path(path).read_bytes()
    header = blob[:FILE_HEADER.size]
    if len(header) < FILE_HEADER.size or not header.startswith(b":W&B"):
        raise TxLogError(f"{path}: not a W&B transaction log")
    payloads, pending, index = [], b"", FILE_HEADER.size
    while index < len(blob):
        left = BLOCK - index % BLOCK
        if left < RECORD_HEADER.size:  # zero padding at a block's end
            index += left
            continue
        if index + RECORD_HEADER.size > len(blob):
            break  # a run killed mid-write leaves a torn tail; the records before it stand
        crc, length, kind = RECORD_HEADER.unpack_from(blob, index)
        data = blob[index + RECORD_HEADER.size:index + RECORD_HEADER.size + length]
        if len(data) < length or checksum(kind, data) != crc:
            break
        index += RECORD_HEADER.size + length
        pending += data
        if kind in (FULL, LAST):
            payloads.append(pending)
            pending = b""
    return header, payloads


def write_payloads(path: Path, header: bytes, payloads: list[bytes]) -> None:
    """The inverse of ``read_payloads``: the same block layout wandb writes."""
    out = bytearray(header)
    for data in payloads:
        used = 0
        while True:
            left = BLOCK - len(out) % BLOCK
            if left < RECORD_HEADER.size:
                out += b"\x00" * left
                continue
            room = left - RECORD_HEADER.size
            chunk = data[used:used + room]
            first, last = used == 0, used + room >= len(data)
            kind = FULL if first and last else FIRST if first else LAST if last else MIDDLE
            out += RECORD_HEADER.pack(checksum(kind, chunk), len(chunk), kind) + chunk
            used += len(chunk)
            if last:
                break
    Path(path).write_bytes(bytes(out))


def checksum(kind: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF


def replace_sweep_id(source: Path, target: Path, sweep_id: str = "") -> int:
    """Copy a transaction log, setting every run record's sweep id; returns how many changed."""
    from wandb.proto import wandb_internal_pb2 as pb

    header, payloads = read_payloads(source)
    changed = 0
    for i, data in enumerate(payloads):
        record = pb.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "run" and record.run.sweep_id != sweep_id:
            record.run.sweep_id = sweep_id
            payloads[i] = record.SerializeToString()
            changed += 1
    write_payloads(target, header, payloads)
    return changed
