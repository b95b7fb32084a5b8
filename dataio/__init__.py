"""img2dataset folders in and out: formats, reader, writer, manifest, recipe, atomic writes, output paths.

The bottom layer: it imports nothing else of this project, and every other package imports it first,
which is why the OpenMP setting below lives here.

    dataio.reader    open_dataset(path) -> Dataset; Sample, Unreadable (bad samples counted, never dropped)
    dataio.formats   one shard reader and one shard writer per format (webdataset, parquet, files)
    dataio.writer    write_dataset(dataset, out, decide): a copy in the input's format; Keep / Remove
    dataio.manifest  manifest.parquet: one row per input key and what became of it
    dataio.recipe    mitigation.json: read, write, its training settings
    dataio.export    kept keys for DataComp's resharder (.npy); scores joinable to img2dataset's parquet
    dataio.summary   what a dataset folder holds (the `inspect` command)
    dataio.truth     the fields that record simulated noise (TRUTH_FIELDS), which only scoring reads
    dataio.atomic    temporary name, then rename: the one way files are written
    dataio.paths     default output folders beside the input (DATA.clipmem, DATA.tradeoff, ...)
    dataio.errors    UsageError, DataError: one line and exit code 2 at the command line
"""

import os

# OpenMP threads spin while waiting for work by default; on a machine shared with other processes (CI, several
# jobs on few cores) a spinning thread holds a core the others need and a training step can take 10x longer.
# Passive waiting costs little on an idle machine. It only works if set before torch is first imported, and
# every package of this project imports dataio before torch: this is the one place it is set.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
