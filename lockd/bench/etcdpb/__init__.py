"""Generated stubs of the few etcd v3 messages and services `lockd bench --compare etcd`
uses (proto/lockd/bench/etcdpb/; `make proto` regenerates them, `make proto-check` checks)."""
