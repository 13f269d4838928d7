"""etcd for a multi-host site: the client and the managed member the site store's etcd engine
(`enforcer.site.kv.etcd`) is built on.

gateway   `EtcdGateway`: an async etcd v3 client over the JSON gateway (aiohttp)
watch     `Watch`: one watch stream, its traps turned into typed errors
records   what the gateway sends and takes (KeyValue, Range, TxnResult, ...), and its encoding
errors    the typed errors: Unreachable, Unavailable, AuthFailed, Compacted, LeaseExpired, ...
member    `ManagedMember`: etcd as a supervised child process; `add_member` to join a cluster
certs     the site's own CA and the certificates of members and clients
"""
