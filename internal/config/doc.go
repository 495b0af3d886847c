// Package config turns the command line and the EGRESSD_* environment into
// checked settings for the egressd binary: the environment overlay for
// flags (a flag given on the command line wins over its variable), the
// serve settings with their derived defaults, and the logger.
package config
