"""Reading and writing whole tar shards in tests that break them on purpose."""

import io
import tarfile


def tar_members(path) -> list:
    """(name, bytes) of each file member, in order."""
    with tarfile.open(path) as archive:
        return [(m.name, archive.extractfile(m).read()) for m in archive.getmembers() if m.isfile()]


def write_tar(path, members, fmt=tarfile.DEFAULT_FORMAT) -> None:
    with tarfile.open(path, "w", format=fmt) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
