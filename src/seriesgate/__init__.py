"""seriesgate: verify a QEMU mailing-list patch series end to end.

The pipeline is the architecture; each stage is a package that takes the
previous stage's typed result and returns its own::

    series  (fetch with b4, prerequisites)      -> SeriesSet
    tree    (base tree + apply ladder)          -> AppliedTree
    build   (baseline / patched / every patch)  -> BuildSet
    testenv (vdpa_sim on the host or in a VM)   -> TestEnv
    functional (Avocado tests on both builds)   -> FunctionalResults
    report  (verdict matrix, md/html/junit/reply)
"""

__version__ = "0.1.0"
