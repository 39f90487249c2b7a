"""The ``shared`` transfer driver: the image datastore is mounted on every host at the same path
(NFS, a cluster filesystem, or one machine), so nothing crosses the network from the core; the
prolog unpacks (archives) or copies (directory images, ``cp -a --reflink=auto``) the disk
straight from the datastore path on the host."""

from .tm import SharedTM

__all__ = ["SharedTM"]
