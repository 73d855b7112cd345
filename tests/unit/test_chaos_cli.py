"""`python -m lockd_cluster.chaos` refuses a fault or availability mode it does not know with a
usage error (exit 2) naming the choices, before it starts anything."""

from __future__ import annotations

import pytest

from lockd_cluster.chaos import main


@pytest.mark.parametrize("argv, needle", [
    (["--faults", "pause_follower,bogus"], "unknown fault(s): bogus"),
    (["--faults", ","], "unknown fault(s)"),
    (["--availability", "sometimes"], "invalid choice: 'sometimes'"),
])
def test_bad_fault_selection_is_a_usage_error(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--seed", "1", "--workload", "mutex", *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and needle in err
    if "--faults" in argv:
        assert "pause_follower" in err          # the choices are listed
