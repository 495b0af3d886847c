// Package datadir owns egressd's data directory: where each file lives,
// where the master key comes from, the first-run setup that init and serve
// share (master key, CA, vault, tenant, keys), and the rekey of the vault
// with the replacement of the master key file. With a shared store (serve
// --store PostgreSQL) the data dir is one replica's: its node id and audit
// journal (OpenShared), the vault and the CA being the store's; its master
// key source may hold two keys around an online rekey (LoadRing,
// RekeyStore); InitStore and the tools (OpenTool) work on the store with a
// temporary node dir; CopyToStore moves a single node's vault and CA into
// such a store. The first-run setup (Bootstrap) runs under a lock held
// across the replicas, so exactly one of them makes the first keys.
//
// It turns the vault's low-level refusals into messages an operator can act
// on: a vault held by a running server (ErrInUse), a master key that is
// missing (ErrNoMasterKey) or does not open the vault (ErrWrongMasterKey).
package datadir
