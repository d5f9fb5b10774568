"""Avocado tests for tests/unit/test_functional_jobs.py: results that depend on the build."""

from avocado import Test


class Builds(Test):
    def test_fails_everywhere(self) -> None:
        self.fail("fails on every build")

    def test_fails_on_patched(self) -> None:
        if "patched" in str(self.params.get("qemu_bin")):
            self.fail("fails on patched only")

    def test_passes(self) -> None:
        pass
