package config

import (
	"errors"
	"io/fs"
	"net"
	"os"
)

// FlagError is a flag whose value cannot be used: a file that cannot be
// read, an address that cannot be bound. Its message is one line that
// names the flag, the value and the problem in plain words, such as
// "--upstream-ca /x.pem: no such file".
type FlagError struct {
	// Flag is the flag's name with its dashes, or an environment variable.
	Flag string
	// Value is the flag's value (a path or an address; never a secret).
	Value string
	// Err is the problem.
	Err error
}

// Error names the flag, the value and the problem.
func (e *FlagError) Error() string {
	if e.Value == "" {
		return e.Flag + ": " + Problem(e.Err)
	}
	return e.Flag + " " + e.Value + ": " + Problem(e.Err)
}

// Unwrap returns the problem.
func (e *FlagError) Unwrap() error { return e.Err }

// Problem says what err means without repeating the operation and path that
// a FlagError names already: "no such file", "permission denied", "is a
// directory", "address already in use".
func Problem(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		err = op.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	return err.Error()
}
