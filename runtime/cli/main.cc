// Entry point of the `dynahug` binary.
#include <iostream>
#include <string>
#include <vector>

#include "runtime/cli/cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const int code = dynahug::runtime::RunCli(args, std::cout, std::cerr);
  std::cout.flush();
  return code;
}
