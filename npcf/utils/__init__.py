"""Stage-free helpers: sparse matrices and integer sets, atomic files, threads, progress."""
