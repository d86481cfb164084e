"""Checksums of multipart objects: COMPOSITE (a checksum of the parts' checksums, "-N") and
FULL_OBJECT (the CRC of the whole object, combined from the parts' CRCs without reading data).

CRC combination uses awscrt when present and otherwise zlib's GF(2) matrix method, which works
for any reflected CRC (CRC32, CRC32C, CRC64NVME).
"""

from __future__ import annotations

import base64

from ec2gw.aws.chunked import new_checksum

#: reflected polynomials and widths of the CRCs S3 can combine
_CRCS = {"CRC32": (0xEDB88320, 32), "CRC32C": (0x82F63B78, 32), "CRC64NVME": (0x9A6C9329AC4BC9B5, 64)}


def composite(algorithm: str, part_values: list[str]) -> str:
    """`base64(alg(concat(part digests)))-N`."""
    h = new_checksum(algorithm.lower())
    for value in part_values:
        h.update(base64.b64decode(value))
    return f"{h.b64digest()}-{len(part_values)}"


def full_object(algorithm: str, parts: list[tuple[str, int]]) -> str:
    """The CRC of the concatenated parts from (base64 CRC, size) of each part."""
    width = _CRCS[algorithm][1]
    crc = 0
    for i, (value, size) in enumerate(parts):
        part_crc = int.from_bytes(base64.b64decode(value), "big")
        crc = part_crc if i == 0 else combine(algorithm, crc, part_crc, size)
    return base64.b64encode(crc.to_bytes(width // 8, "big")).decode()


def combine(algorithm: str, crc1: int, crc2: int, len2: int) -> int:
    try:
        from awscrt import checksums as crt

        fn = {"CRC32": "combine_crc32", "CRC32C": "combine_crc32c", "CRC64NVME": "combine_crc64nvme"}[algorithm]
        return int(getattr(crt, fn)(crc1, crc2, len2))
    except (ImportError, AttributeError):
        poly, width = _CRCS[algorithm]
        return _combine(crc1, crc2, len2, poly, width)


def _gf2_times(mat: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _gf2_square(mat: list[int]) -> list[int]:
    return [_gf2_times(mat, m) for m in mat]


def _combine(crc1: int, crc2: int, len2: int, poly: int, width: int) -> int:
    """zlib's crc32_combine, generalised to any reflected CRC of `width` bits."""
    if len2 <= 0:
        return crc1
    odd = [poly] + [1 << i for i in range(width - 1)]  # the operator for one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    while True:
        even = _gf2_square(odd)  # first pass: one zero byte
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2
