"""The compiled kernels, by family; nothing here checks arguments or lays
data out (``_args``, ``_layout``), nor chooses a route (``_routes``).

* ``compile``: the three flag sets (``jit``, ``jit_inl``, ``jit_fast``)
* ``exp``: the vectorizable exp / log1p / tanh and their float tricks
* ``rows``: serial sweeps of one row (max, exp-sum, stores), the
  ``(max, sum)`` pair algebra (``merge``, ``finish``), narrow blocks
* ``drivers``: the prange drivers of rows, narrow rows and pieces
* ``columns``: column sweeps of ``(P, N, Q)`` slabs, folded columns
* ``xent``: cross-entropy rows and columns (loss and gradient fused)
* ``threads``: ``kernel`` (serial / parallel dispatch) and the thread count
"""
