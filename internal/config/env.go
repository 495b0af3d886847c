package config

import (
	"flag"
	"fmt"
	"strings"
)

// EnvPrefix starts the name of every environment variable egressd reads.
const EnvPrefix = "EGRESSD_"

// MasterKeyEnv holds the master key itself (its text form), as an
// alternative to a master key file. It is never written to disk by egressd.
const MasterKeyEnv = EnvPrefix + "MASTER_KEY"

// EnvName is the environment variable that stands for a flag:
// "admin-listen" becomes "EGRESSD_ADMIN_LISTEN".
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ApplyEnv sets every flag of fs that was not given on the command line
// from its environment variable, when that variable is set and not empty.
// Call it after fs.Parse. Afterwards fs.Visit sees the flags set either
// way, so a caller can tell an explicit value from a default. getenv nil
// means no environment.
func ApplyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	if getenv == nil {
		return nil
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		name := EnvName(f.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("environment variable %s: %w", name, serr)
		}
	})
	return err
}

// IsSet reports whether the flag was given on the command line or, after
// ApplyEnv, by its environment variable.
func IsSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// AnnotateEnv appends the environment variable of each flag of fs to its
// usage text, so that -h lists both.
func AnnotateEnv(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " (env " + EnvName(f.Name) + ")" })
}
