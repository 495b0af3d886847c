package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// childTimeout bounds every wait on a child: its start and each answer.
const childTimeout = 30 * time.Second

// childStopTimeout bounds the wait for a child's exit: egressd's shutdown
// ships the audit rows its journal still holds to the store first, which
// on a slow store takes a while (the rows/s figure counts that time).
const childStopTimeout = 5 * time.Minute

// child is a proxy running in a re-exec of this binary.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	addr  string
	done  chan struct{}
}

// startChild re-executes this binary as a proxy child and waits until it
// serves. The child's stderr goes to ours.
func startChild(ctx context.Context, spec childSpec) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 4), done: make(chan struct{})}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	go func() {
		cmd.Wait()
		close(c.done)
	}()
	line, err := c.read("ready ")
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("%s child: %w", spec.Proxy, err)
	}
	c.addr = line
	return c, nil
}

// read waits for the next line, which must start with prefix, and returns
// the rest of it.
func (c *child) read(prefix string) (string, error) {
	select {
	case line, ok := <-c.lines:
		if !ok {
			return "", errors.New("exited")
		}
		rest, found := strings.CutPrefix(line, prefix)
		if !found {
			return "", fmt.Errorf("unexpected line %q", line)
		}
		return rest, nil
	case <-time.After(childTimeout):
		return "", errors.New("no answer")
	}
}

// call sends a command ("begin" or "end") and returns the stats it answers.
func (c *child) call(cmd string) (procStats, error) {
	var s procStats
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		return s, err
	}
	rest, err := c.read("stats ")
	if err != nil {
		return s, fmt.Errorf("%s: %w", cmd, err)
	}
	return s, json.Unmarshal([]byte(rest), &s)
}

// stop closes the child's stdin (it shuts down and exits) and kills it if
// it has not exited within childStopTimeout.
func (c *child) stop() {
	c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(childStopTimeout):
		c.cmd.Process.Kill()
		<-c.done
	}
}
