"""The paper's evaluations. Importing this package registers the run protocols (how one run gets
its data and is evaluated) and the paper tables (grids, reference numbers, cell mapping)."""

from protocols import (  # noqa: F401
    ablations,
    mvtec,
    novelty,
    table1_detection,
    table2_localisation,
    table3_complexity,
    table4_novelty,
)
