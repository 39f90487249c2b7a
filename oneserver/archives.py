"""Root filesystem archives: which kind of tar a file is. Read from its first bytes, since an
image in a datastore has no meaningful name; from its name only as a last resort."""

from __future__ import annotations

MAGIC = ((b"\x1f\x8b", "tar.gz"), (b"\xfd7zXZ\x00", "tar.xz"), (b"BZh", "tar.bz2"))
SUFFIXES = (
    ((".tar.gz", ".tgz"), "tar.gz"),
    ((".tar.xz", ".txz"), "tar.xz"),
    ((".tar.bz2", ".tbz2"), "tar.bz2"),
    ((".tar",), "tar"),
)
# tar reading from a pipe cannot guess the compression: the flag each format needs.
TAR_FLAGS = {"tar": "", "tar.gz": "-z", "tar.xz": "-J", "tar.bz2": "-j"}


def sniff(path: str, by_name: bool = True) -> str | None:
    """``tar``, ``tar.gz``, ``tar.xz`` or ``tar.bz2``; None if the file is none of them.
    ``by_name=False``: the content alone decides (registering an image)."""
    with open(path, "rb") as f:
        head = f.read(512)
    for magic, fmt in MAGIC:
        if head.startswith(magic):
            return fmt
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if not by_name:
        return None
    name = path.lower()
    for suffixes, fmt in SUFFIXES:
        if name.endswith(suffixes):
            return fmt
    return None
