"""WebDataset-style tar shards, read by random access: few large files instead of millions of small ones.

Layout: ``root/train/*.tar`` and ``root/val/*.tar`` (optionally ``root/test/*.tar``). A sample is the
members of one shard that share a key (the member's path up to the first dot of its file name, as
WebDataset groups them): an image (``.jpg``, ``.jpeg``, ``.png``, ``.webp``...) and ``.cls``, the class
index as text. Shards are indexed once per training process (the member headers only) and each image
is read at its offset, so the per-image seeded augmentation and the shards of a multi-GPU state work
as for class folders; the reads are random, not the sequential stream of the WebDataset library.
Compressed shards (``.tar.gz``) cannot be read at an offset and are refused.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import NamedTuple

from prunebench.errors import DataError

SHARDS_HINT = (
    "a webdataset folder holds train/ and val/ (and optionally test/), each with uncompressed .tar shards "
    "whose samples are an image (<key>.jpg, .png...) and its class index (<key>.cls)"
)


class ShardMember(NamedTuple):
    """Where one image lies in a shard: the tar file, the member's name, its data offset and size."""

    tar: str
    name: str
    offset: int
    size: int

    def __str__(self) -> str:
        return f"{self.tar}:{self.name}"


def read_member(member: ShardMember) -> bytes:
    """The bytes of one shard member (a DataError names the shard when it cannot be read)."""
    try:
        with open(member.tar, "rb") as f:
            f.seek(member.offset)
            data = f.read(member.size)
    except OSError as exc:
        raise DataError(f"cannot read {member} ({exc}); check the shard") from None
    if len(data) != member.size:
        raise DataError(f"cannot read {member}: the shard is truncated; write it again")
    return data


def _key_of(name: str) -> tuple[str, str]:
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def scan_shards(dataset: str, folder: Path, image_extensions: tuple[str, ...]) -> list[tuple[ShardMember, int]]:
    """The (image, class index) samples of the shards in ``folder``, in shard and member order."""
    where = f"dataset {dataset!r}"
    if not folder.is_dir():
        raise DataError(f"{where}: no {folder.name}/ split in {folder.parent} ({folder} is missing); {SHARDS_HINT}")
    shards = sorted(folder.glob("*.tar"))
    if not shards:
        others = sorted(p.name for p in folder.iterdir() if p.name.endswith((".tar.gz", ".tgz")))[:3]
        why = f" (compressed shards such as {', '.join(others)} cannot be read at an offset)" if others else ""
        raise DataError(f"{where}: {folder} holds no .tar shards{why}; {SHARDS_HINT}")
    wanted = {e.lstrip(".") for e in image_extensions}
    samples = []
    for shard in shards:
        images: dict[str, ShardMember] = {}
        labels: dict[str, int] = {}
        try:
            with tarfile.open(shard, "r:") as tf:
                for m in tf:
                    if not m.isfile():
                        continue
                    key, ext = _key_of(m.name)
                    if ext in wanted:
                        images[key] = ShardMember(str(shard), m.name, m.offset_data, m.size)
                    elif ext == "cls":
                        text = tf.extractfile(m).read().decode("utf-8", "replace").strip()
                        if not text.isdigit():
                            raise DataError(
                                f"{where}: {shard}:{m.name} holds {text[:20]!r}, not a class index; write the "
                                "sample's class as a number from 0"
                            )
                        labels[key] = int(text)
        except tarfile.TarError as exc:
            raise DataError(
                f"{where}: cannot read shard {shard} ({exc}); write it again as an uncompressed .tar"
            ) from None
        unlabelled = sorted(set(images) - set(labels))
        if unlabelled:
            raise DataError(
                f"{where}: sample {unlabelled[0]!r} of {shard} has an image but no .cls member "
                f"({len(unlabelled)} such samples); add its class index as {unlabelled[0]}.cls"
            )
        samples += [(images[k], labels[k]) for k in images]
    if not samples:
        raise DataError(f"{where}: the shards in {folder} hold no images ({', '.join(sorted(wanted))}); {SHARDS_HINT}")
    return samples
