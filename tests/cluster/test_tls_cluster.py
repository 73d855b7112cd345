"""A 3-node cluster whose gRPC ports require mTLS, with an ACL: the real `lockd serve` processes.

Nodes ask each other's Status over mTLS (their certificates' CN has a grant), the CLI's global
--tls-* flags work, a client without a certificate is refused, and SIGHUP reloads the ACL.
"""

import json
import os
import signal
import subprocess

import grpc
import pytest

import lockd_client
from lockd_cluster import LocalCluster
from tests.cluster.util import child_env, lockd_argv
from tests.support.tls import TestPKI
from tests.support.wait import wait_until

pytestmark = pytest.mark.cluster

ACL = """
[[grant]]
identities = ["node", "ops"]
prefix = ""
allow = ["admin"]

[[grant]]
identity = "app"
prefix = "app/"
allow = ["lock"]
"""


@pytest.fixture
def tls_cluster(cluster_dir):
    pki = TestPKI(cluster_dir / "pki")
    cert, key = pki.node("node")         # one certificate for all three (CN=node, 127.0.0.1)
    acl = cluster_dir / "acl.toml"
    acl.write_text(ACL)
    c = LocalCluster(3, cluster_dir / "nodes", extra_args=[
        "--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(pki.ca),
        "--acl-file", str(acl)])
    ops_cert, ops_key = pki.client("ops")
    c.channel_credentials = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(), ops_key.read_bytes(), ops_cert.read_bytes())
    try:
        c.start()
        c.wait_for_members(timeout=30)
        yield c, pki, acl
    finally:
        c.stop()


def test_mtls_cluster_serves_the_cli_and_clients_and_reloads_its_acl_on_sighup(tls_cluster):
    c, pki, acl = tls_cluster
    ops_cert, ops_key = pki.client("ops")
    tls_args = ["--tls-ca", str(pki.ca), "--tls-cert", str(ops_cert), "--tls-key", str(ops_key)]
    r = subprocess.run(lockd_argv(c.endpoints, *tls_args, "status", "--json"),
                       capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == 0, r.stderr
    members = json.loads(r.stdout)["members"]
    # every member answered its peer's Status over mTLS: none is unreachable
    assert sorted(m["role"] for m in members) == ["follower", "follower", "leader"], members

    r = subprocess.run(lockd_argv(c.endpoints, "--timeout", "2", "status"),
                       capture_output=True, text=True, timeout=60, env=child_env())
    assert r.returncode == 3 and "Traceback" not in r.stderr      # plain text: refused

    app_cert, app_key = pki.client("app")
    app = lockd_client.TLSConfig(ca=str(pki.ca), cert=str(app_cert), key=str(app_key))
    with lockd_client.connect(c.endpoints, timeout=10, tls=app) as client:
        with client.session(ttl=10) as s:
            with s.lock("app/job").hold(timeout=5) as lk:
                assert client.check_token("app/job", lk.token).valid
            with pytest.raises(lockd_client.PermissionDeniedError) as ei:
                s.lock("other/job").acquire(timeout=1)
            assert ei.value.metadata["prefix"] == "other/job"
            acl.write_text(ACL + '\n[[grant]]\nidentity = "app"\nprefix = "other/"\n'
                                 'allow = ["lock"]\n')
            for n in c.nodes:
                os.kill(n.pid, signal.SIGHUP)

            def granted():
                try:
                    lk = s.lock("other/job")
                    if lk.acquire(timeout=1):
                        lk.release()
                        return True
                except lockd_client.PermissionDeniedError:
                    return False
            wait_until(granted, 15, message="the reloaded ACL to grant other/")
    for i in range(3):   # every node reloaded (the leader's reload alone made the grant work)
        wait_until(lambda: "acl_reloaded" in c.logs(i), 10, message=f"node{i + 1} to reload")
        assert c.is_running(i)
