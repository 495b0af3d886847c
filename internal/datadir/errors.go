package datadir

import "errors"

// ErrInUse means the vault file is locked by another process, in practice a
// running egressd serve. Verbs that open the file need the server stopped.
var ErrInUse = errors.New("the data dir is in use by a running egressd")

// ErrNoMasterKey means the vault exists but its master key file does not,
// and no key was given in the environment. A new key is never created for
// an existing vault: it could not open it.
var ErrNoMasterKey = errors.New("master key not found")

// ErrWrongMasterKey means the master key given does not open the vault,
// typically the key from before a rekey.
var ErrWrongMasterKey = errors.New("the master key does not open this vault")

// ErrNoVault means a verb that needs an existing vault found none.
var ErrNoVault = errors.New("no vault in the data dir")

// ErrKeyConflict means both a master key file and the key itself in the
// environment were given, and egressd will not guess which one is meant.
var ErrKeyConflict = errors.New("two master keys given")
