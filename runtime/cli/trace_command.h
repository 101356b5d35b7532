// `dynahug trace FILE... [--opcodes] [--format text|json] [--loader L]
//  [--as NAME] [--timeout SECONDS] [--memory MIB] [--jobs N] [--no-prewarm]`:
// loads each file for real inside the sandbox, with the loaders a victim
// would call (runtime/trace/trace_runner.h FileLoaders; --loader runs one
// alone, --as NAME lends the file a name for the extension rule), and shows
// what the load did; events carry their stacked-stream index "(stream N)"
// and, when several loaders ran, "<loader>". Without
// --opcodes the trace is grouped (imports, globals, calls, audit events,
// blocked actions, integrity
// findings, syscalls, how the child ended); with --opcodes the pickle is
// executed one opcode at a time and every opcode (offset, name, argument) is
// interleaved with the events it caused. --format json prints the
// proto::Trace messages as JSON. Files are traced by a worker pool of
// --jobs N zygote processes (runtime/trace/trace_worker.h; default 1, at most
// one per file); the output is in input order whatever N is. Every zygote
// imports every allowlisted library first, like scan, train and eval
// (TraceWorkerOptions::prewarm), so that a file's trace does not depend on
// which files its worker traced before; --no-prewarm imports lazily instead
// (seconds less start-up for a single file; the trace then depends on the
// worker's history). --prewarm, the default, is still accepted.
//
// SIGINT, SIGTERM and SIGHUP during a run stop it cleanly: no file is
// started after the signal, every worker is SIGKILLed (their sandboxed
// children die with them by PR_SET_PDEATHSIG) and reaped, a message on
// stderr says how many files were traced, and the exit code is 128 + the
// signal number (130 for SIGINT, 143 for SIGTERM). Output already printed
// stays; a --format json document is left unclosed.
#ifndef DYNAHUG_RUNTIME_CLI_TRACE_COMMAND_H_
#define DYNAHUG_RUNTIME_CLI_TRACE_COMMAND_H_

#include <iosfwd>
#include <string>
#include <vector>

#include "proto/dynahug.pb.h"

namespace dynahug::runtime {

// Runs the subcommand; `args` excludes "trace". Returns kExitOk when every
// file was traced, 128 + signal number when interrupted, kExitError
// otherwise. Blocks SIGINT/SIGTERM/SIGHUP while it runs (restoring the mask
// on return), so the calling process must be single-threaded.
int RunTrace(const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err);

// Human-readable rendering of a trace (the text format of `trace`).
// `chronological` lists every event in order (analyst mode) instead of
// grouping them.
void PrintTraceText(const proto::Trace& trace, bool chronological,
                    std::ostream& out);

}  // namespace dynahug::runtime

#endif  // DYNAHUG_RUNTIME_CLI_TRACE_COMMAND_H_
