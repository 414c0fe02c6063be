"""Loopback detection and the rule for listening on other addresses (workbench.exposure)."""

from __future__ import annotations

import pytest

from workbench.errors import WorkbenchError
from workbench.exposure import check_exposure, is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST",
                                  "localhost.", "::ffff:127.0.0.1", "::1%lo"])
def test_loopback_hosts(host):
    assert is_loopback(host)
    assert check_exposure(host, None, False) is None
    assert check_exposure(host, "secret", True) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.10", "10.0.0.1", "example.org",
                                  "localhost.example.org", "128.0.0.1", "::ffff:10.0.0.1"])
def test_other_hosts_are_not_loopback(host):
    assert not is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "myhost"])
def test_non_loopback_needs_token_or_public(host):
    with pytest.raises(WorkbenchError) as err:
        check_exposure(host, None, False)
    message = str(err.value)
    assert "\n" not in message
    assert "--token" in message and "--public" in message
    assert (host or "''") in message
    with pytest.raises(WorkbenchError):
        check_exposure(host, "", False)  # an empty token is no token


def test_non_loopback_with_token_warns():
    warning = check_exposure("0.0.0.0", "s3cret", False)
    assert warning and warning.startswith("warning:") and "\n" not in warning
    assert "0.0.0.0" in warning and "token" in warning
    assert "s3cret" not in warning  # the token is never printed in the warning


def test_non_loopback_public_warns():
    warning = check_exposure("10.1.2.3", None, True)
    assert warning and "--public" in warning and "10.1.2.3" in warning and "\n" not in warning


@pytest.mark.parametrize("argv", [["app", "--host", "0.0.0.0", "--port", "0"],
                                  ["app", "--bind", "192.168.1.10"],
                                  ["view", "missing.zarr", "--host", "0.0.0.0", "--no-wait"]])
def test_cli_refuses_a_reachable_host_without_token_or_public(argv, capsys):
    from workbench.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "reachable from other machines" in err, err
    assert ("--public" in err) and (("--token" in err) == (argv[0] == "app")), err
