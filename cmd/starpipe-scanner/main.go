// Command starpipe-scanner runs one scan (nuclei, amass or a code analyser)
// for the starpipe worker, which starts it as a child process; it is not
// meant to be run by hand.
//
//	starpipe-scanner version   prints {"protocol":N,"version":"..."}
//	starpipe-scanner exec      reads a scanexec.Job (JSON) on stdin, writes
//	                           the scanner's output on stdout
//
// This is the only program that links the nuclei and amass engines. Their
// packages write files under $HOME, $XDG_CONFIG_HOME and $TMPDIR while
// they initialise, before main runs: the worker starts this program with
// those variables pointing into a directory of the scan home made for the
// run (see scan/scanexec), so no process-wide environment is rewritten
// here or anywhere else.
//
// Exit codes follow scan/scanexec: 0 the scan succeeded; 1 it failed, and
// the last line of standard error, starting "error: ", says why; 3 the job
// could not be read. Anything else (a panic, a signal) is a crash, which
// the worker records with the last lines of standard error.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	amassengine "github.com/starpipe/starpipe/scan/amass/engine"
	"github.com/starpipe/starpipe/scan/code"
	nucleiengine "github.com/starpipe/starpipe/scan/nuclei/engine"
	"github.com/starpipe/starpipe/scan/scanexec"
)

// version is set with -ldflags "-X main.version=..." by the Makefile.
var version = "dev"

// maxJobBytes bounds the job document read from stdin.
const maxJobBytes = 8 << 20

// crashHelperArg is the hidden command of the crash test's helper process.
const crashHelperArg = "crash-test-helper"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, scanexec.ErrorPrefix+"usage: starpipe-scanner version|exec (started by the starpipe worker)")
		return scanexec.ExitUsage
	}
	switch args[0] {
	case "version":
		b, _ := json.Marshal(scanexec.Version{Protocol: scanexec.ProtocolVersion, Version: version})
		fmt.Fprintf(stdout, "%s\n", b)
		return scanexec.ExitOK
	case "exec":
		// SIGTERM (the worker's cancellation) and SIGINT stop the scan the
		// way a timeout does: the engines clean up and the process exits.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		return execJob(ctx, stdin, stdout, stderr)
	case crashHelperArg:
		if os.Getenv(scanexec.TestHooksVar) != "1" {
			break
		}
		select {} // killed with its group
	}
	fmt.Fprintf(stderr, "%sunknown command %q\n", scanexec.ErrorPrefix, args[0])
	return scanexec.ExitUsage
}

func execJob(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("component", "scanner")
	var job scanexec.Job
	dec := json.NewDecoder(io.LimitReader(stdin, maxJobBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&job); err != nil {
		fmt.Fprintf(stderr, "%sreading job: %v\n", scanexec.ErrorPrefix, err)
		return scanexec.ExitUsage
	}
	if job.Protocol != scanexec.ProtocolVersion {
		fmt.Fprintf(stderr, "%sjob speaks protocol %d, this scanner %d\n", scanexec.ErrorPrefix, job.Protocol, scanexec.ProtocolVersion)
		return scanexec.ExitUsage
	}
	if err := job.Validate(); err != nil {
		fmt.Fprintf(stderr, "%s%v\n", scanexec.ErrorPrefix, err)
		return scanexec.ExitUsage
	}

	out := bufio.NewWriterSize(stdout, 64<<10)
	err := scan(ctx, log, job, out, stderr)
	if ferr := out.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("writing output: %w", ferr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s%v\n", scanexec.ErrorPrefix, err)
		return scanexec.ExitFailed
	}
	return scanexec.ExitOK
}

func scan(ctx context.Context, log *slog.Logger, job scanexec.Job, out io.Writer, stderr io.Writer) error {
	// Every connection of every kind of scan is checked against the
	// admin's network policy, which the worker puts in the job.
	np, err := job.Network.Policy()
	if err != nil {
		return err
	}
	switch job.Kind {
	case scanexec.KindNuclei:
		st, err := nucleiengine.Run(ctx, *job.Nuclei, np, out)
		// The update client's refused attempts, so that the worker's logs
		// (and the tests) see that nothing left the process that way.
		if hosts := nucleiengine.RefusedRequests(); len(hosts) > 0 {
			log.Info("outbound requests refused", "hosts", hosts)
		}
		if err != nil {
			return err
		}
		log.Info("nuclei scan finished", "targets", st.Targets, "templates", st.Templates, "results", st.Results)
		return nil
	case scanexec.KindAmass:
		st, err := amassengine.Run(ctx, *job.Amass, np, out)
		if err != nil {
			return err
		}
		log.Info("amass enumeration finished", "names", st.Names, "addresses", st.Addresses)
		return nil
	case scanexec.KindCode:
		code.UseNetwork(np)
		// This process runs nothing but the analyser: whatever it leaves
		// behind, setsid or not, comes back here to be killed.
		if err := code.EnableSubreaper(); err != nil {
			return err
		}
		res, err := code.Run(ctx, *job.Code, out)
		if err != nil {
			return err
		}
		log.Info("code scan finished", "commit", res.Commit, "bytes", res.Bytes, "exit_code", res.ExitCode)
		return nil
	case scanexec.KindCrashTest:
		return crashTest(ctx, job.CrashTest.Mode, out, stderr)
	}
	return fmt.Errorf("unknown kind %q", job.Kind)
}

// crashTest crashes the way mode says, for the tests of the worker and of
// scan/scanexec. It refuses to run unless the test hooks are enabled in
// the environment, which the worker never does.
func crashTest(ctx context.Context, mode string, out io.Writer, stderr io.Writer) error {
	if os.Getenv(scanexec.TestHooksVar) != "1" {
		return errors.New("crash-test jobs are disabled")
	}
	fmt.Fprintf(stderr, "crash test: %s\n", mode)
	switch mode {
	case scanexec.CrashPanic:
		done := make(chan struct{})
		go func() {
			defer close(done)
			panic("crash test: a scanner library panicked")
		}()
		<-done
	case scanexec.CrashKill:
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case scanexec.CrashHang:
		self, err := os.Executable()
		if err != nil {
			return err
		}
		helper := exec.Command(self, crashHelperArg)
		if err := helper.Start(); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "crash test: helper pid %d\n", helper.Process.Pid)
		// Ignores SIGTERM (ctx): only SIGKILL ends this process.
		select {}
	case scanexec.CrashFlood:
		line := []byte(`{"flood":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}` + "\n")
		for {
			if _, err := out.Write(line); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	return fmt.Errorf("unknown crash-test mode %q", mode)
}
