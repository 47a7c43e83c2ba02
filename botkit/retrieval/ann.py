"""An approximate nearest-neighbour index for a large scope: faiss IVF with 8-bit codes.

Exact search reads every vector each query: 1M chunks of 384 dimensions is ~150 ms a query
on two cores (bench/retrieval.py). Above [retrieval] index_threshold a scope also gets this
index. Why faiss IVF-SQ8 (measured on 2 cores, 384 dimensions, clustered unit vectors):
building it on 1M vectors takes ~15 s where HNSW took ~60 s (faiss) to ~115 s (usearch) on
100k already, and a scope's index is rebuilt after every deletion; its 8-bit codes cost a
quarter of the float32 vectors (~0.5 GB at 1M against ~1.8 GB for IVF-Flat); its candidates
are re-ranked exactly from the scope's own matrix (bench/retrieval.py has recall@10).
hnswlib ships no wheel here.

Rows are positions in the scope's matrix, added in order, so position i is the matrix's row
i. One lock guards the index: faiss does not allow a search during an add.
"""

from __future__ import annotations

import math
import threading

import faiss
import numpy as np
import numpy.typing as npt

__all__ = ["AnnIndex"]

# Lists searched per query: a fifth of them, at least 32. On clustered 384-dimension vectors
# (100k, two of a topic at cosine ~0.5) 16 of 316 lists gave recall@10 0.88, 48 0.95, 96 0.98.
_PROBE_SHARE = 5
_LEAST_PROBES = 32
_TRAINING_PER_LIST = 64  # faiss asks for at least 39 points per list; more gains little
_ADD_BATCH = 4096  # rows per add under the lock: a search waits for one batch at most


class AnnIndex:
    """IVF-SQ8 over the first `count` rows of a scope's matrix (inner product)."""

    def __init__(self, matrix: npt.NDArray[np.float32]) -> None:
        """Train on a sample of matrix and add all its rows (seconds for 1M: run it in a
        thread)."""
        rows, dimensions = matrix.shape
        self.dimensions = int(dimensions)
        self.trained_on = int(rows)
        # About √n lists, each with enough points to train its centroid.
        lists = max(1, min(math.isqrt(rows), rows // 39))
        quantizer = faiss.IndexFlatIP(self.dimensions)
        self._index = faiss.IndexIVFScalarQuantizer(
            quantizer,
            self.dimensions,
            lists,
            faiss.ScalarQuantizer.QT_8bit,
            faiss.METRIC_INNER_PRODUCT,
        )
        self._quantizer = quantizer  # the index does not own it: keep it alive
        sample = min(rows, lists * _TRAINING_PER_LIST)
        chosen = np.random.default_rng(0).choice(rows, sample, replace=False)
        self._index.train(np.ascontiguousarray(matrix[np.sort(chosen)]))
        self._lock = threading.Lock()
        self.add(matrix)

    @property
    def count(self) -> int:
        """Rows in the index: the matrix's first `count`."""
        return int(self._index.ntotal)

    @property
    def nbytes(self) -> int:
        """About what it holds: a code and an id per row, and the centroids."""
        return self.count * (self.dimensions + 8) + self._index.nlist * self.dimensions * 4

    def add(self, matrix: npt.NDArray[np.float32]) -> None:
        """Add matrix's rows from `count` on (in a thread: a batch at a time, under the lock)."""
        start = self.count
        for begin in range(start, len(matrix), _ADD_BATCH):
            batch = np.ascontiguousarray(matrix[begin : begin + _ADD_BATCH], dtype=np.float32)
            with self._lock:
                self._index.add(batch)

    def search(
        self, query: npt.NDArray[np.float32], limit: int, allowed: npt.NDArray[np.bool_] | None
    ) -> npt.NDArray[np.int64]:
        """Positions of up to limit rows nearest to query (allowed: a mask over the first
        `count` rows; only those may be returned)."""
        params = faiss.SearchParametersIVF()
        lists = int(self._index.nlist)
        params.nprobe = min(lists, max(_LEAST_PROBES, lists // _PROBE_SHARE))
        if allowed is not None:
            bitmap = np.packbits(allowed[: self.count], bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        with self._lock:
            _, found = self._index.search(
                np.ascontiguousarray(query[None], dtype=np.float32), limit, params=params
            )
        positions: npt.NDArray[np.int64] = found[0].astype(np.int64)
        return positions[positions >= 0]
