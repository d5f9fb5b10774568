"""Avocado tests for tests/unit/test_zygote.py: run through the warm Avocado server."""

import os
import time

from avocado import Test


class Sample(Test):
    def test_pass(self) -> None:
        self.log.info("runner pid %d", os.getpid())

    def test_fail(self) -> None:
        self.fail("failing on purpose")

    def test_sleep(self) -> None:
        # Long enough to be killed first; the unit test that starts it checks nothing survives.
        with open(os.environ["SG_SAMPLE_PIDFILE"], "w") as pidfile:
            pidfile.write(str(os.getpid()))
        time.sleep(120)
