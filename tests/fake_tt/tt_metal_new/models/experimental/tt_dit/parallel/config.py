# Fake of models/experimental/tt_dit/parallel/config.py: the parallel-config records the pipelines take.

from typing import NamedTuple


class ParallelFactor(NamedTuple):
    factor: int
    mesh_axis: int


class DiTParallelConfig(NamedTuple):
    cfg_parallel: ParallelFactor | None
    tensor_parallel: ParallelFactor
    sequence_parallel: ParallelFactor


class VaeHWParallelConfig(NamedTuple):
    height_parallel: ParallelFactor
    width_parallel: ParallelFactor
