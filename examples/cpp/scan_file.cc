// Example: the dynahug C++ API (runtime/scanner/scanner.h) in a program of
// its own. Scans each file named on the command line and prints its verdict;
// with --trace, also the globals its sandboxed load resolved. Exit code as
// `dynahug scan`: 0 all benign, 1 any malicious, 2 an error.
//
//   build/examples/dynahug_scan_example examples/tiny_mlp_state_dict.pt
//
// Link: target_link_libraries(your_program PRIVATE dynahug::scanner).
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "runtime/scanner/scanner.h"

int main(int argc, char** argv) {
  bool show_globals = false;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--trace") == 0) {
      show_globals = true;
    } else {
      paths.push_back(argv[i]);
    }
  }
  if (paths.empty()) {
    std::fprintf(stderr, "usage: %s [--trace] FILE...\n", argv[0]);
    return 2;
  }
  absl::StatusOr<std::unique_ptr<dynahug::Scanner>> scanner =
      dynahug::Scanner::Create();
  if (!scanner.ok()) {
    std::fprintf(stderr, "cannot start the scanner: %s\n",
                 std::string(scanner.status().message()).c_str());
    return 2;
  }
  int exit_code = 0;
  for (const std::string& path : paths) {
    dynahug::ScanOptions options;
    options.keep_trace = show_globals;
    absl::StatusOr<dynahug::ScanOutcome> r =
        (*scanner)->ScanPath(path, options);
    if (!r.ok()) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(),
                   std::string(r.status().message()).c_str());
      return 2;
    }
    const dynahug::proto::Verdict& v = r->verdict;
    switch (v.label()) {
      case dynahug::proto::Verdict::BENIGN:
      case dynahug::proto::Verdict::MALICIOUS:
        std::printf("%s %s score %.3f (threshold %.3f) via %s, %.0f ms\n",
                    v.label() == dynahug::proto::Verdict::BENIGN ? "BENIGN   "
                                                                 : "MALICIOUS",
                    path.c_str(), v.score(), v.threshold(), r->loader.c_str(),
                    r->elapsed_ms);
        for (const std::string& c : v.capabilities()) {
          std::printf("    capability: %s\n", c.c_str());
        }
        if (v.label() == dynahug::proto::Verdict::MALICIOUS) exit_code = 1;
        break;
      case dynahug::proto::Verdict::SKIPPED:
        std::printf("SKIPPED   %s %s\n", path.c_str(), v.skip_reason().c_str());
        break;
      default:
        std::printf("ERROR     %s %s\n", path.c_str(), v.error().c_str());
        if (exit_code == 0) exit_code = 2;
    }
    if (show_globals) {
      for (const dynahug::ResolvedGlobal& g : r->globals) {
        std::printf("    global %s.%s%s\n", g.module.c_str(), g.name.c_str(),
                    g.stub ? " (stub)" : "");
      }
      if (r->trace) {
        std::printf("    %d events\n", r->trace->events_size());
      }
    }
  }
  return exit_code;
}
