"""tooz's own driver test suite against a real 3-node cluster through ``lockd://`` (docs/tooz.md).

tooz ships its backend-generic tests in the package: `tooz/tests/test_coordination.py`
(`TestAPI`) and `TestPartitioner` in `tooz/tests/test_partitioner.py` pick their backend from
`TOOZ_TEST_URL`. This runs both (the rest of `tooz.tests` tests other backends or no backend)
in a child pytest against the cluster and asserts: no failure, no error, and exactly the two
skips the driver is expected to have (tooz skips `test_timeout` for NON_TIMEOUT_BASED
drivers, and `test_watch_join_group_disappear` for every backend but etcd3, memcached and
redis). A test that starts raising `tooz.NotImplemented` shows up here as a new skip.
About 30 s here.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import tooz.tests

from tests.cluster.util import child_env

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

SUITE_TIMEOUT = 240.0
EXPECTED_SKIPS = {"test_timeout", "test_watch_join_group_disappear"}
MIN_PASSED = 86   # with tooz 9.1: 81 in test_coordination.py, 5 in TestPartitioner


def test_tooz_suite_passes_against_a_three_node_cluster(cluster, tmp_path):
    tests_dir = pathlib.Path(tooz.tests.__file__).parent
    report = tmp_path / "tooz.xml"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")   # not the repository's settings
    env = child_env()
    env["TOOZ_TEST_URL"] = f"lockd://{cluster.endpoints}?ttl=10"
    argv = [sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"),
            "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-q", "-rfEs",
            "--timeout", "60",                  # a hung test fails by name, not the run
            f"--junitxml={report}", "-o", "junit_family=xunit2",
            str(tests_dir / "test_coordination.py"),
            str(tests_dir / "test_partitioner.py") + "::TestPartitioner"]
    out = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=SUITE_TIMEOUT)
    tail = (out.stdout + out.stderr)[-6000:]
    assert report.exists(), tail
    passed, skipped, failed = [], [], []
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "")
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(name)
        elif case.find("skipped") is not None:
            skipped.append(name)
        else:
            passed.append(name)
    print(f"tooz suite: {len(passed)} passed, {len(skipped)} skipped, {len(failed)} failed")
    assert not failed, tail
    assert out.returncode == 0, tail
    assert set(skipped) == EXPECTED_SKIPS, tail
    assert len(passed) >= MIN_PASSED, tail
