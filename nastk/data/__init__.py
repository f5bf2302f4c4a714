"""Data plumbing every task shares: the one loader factory (``loaders``), a task's splits and
their cache (``splits``), the image-task pieces (``images``: the size option, reading and
resizing; ``folders``: the folder-dataset base of real-data loaders; ``flips``: target-aware
flips), and tabular benchmarks (``tabular``, their folders: ``dirs``)."""
