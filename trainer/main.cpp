// baleine: the one executable. Everything is in trainer/cli.cpp; this file only maps escaping
// exceptions to an exit status, so that no input can end in an uncaught-exception abort.
#include <exception>
#include <iostream>

#include "trainer/cli.h"

int main(int argc, char** argv) {
  try {
    return baleine::cli::run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "internal error: " << e.what()
              << "\nHINT: this is a bug in baleine; please report it with the command line\n";
    return 1;
  }
}
