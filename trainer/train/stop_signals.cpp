#include "trainer/train/stop_signals.h"

#include <unistd.h>

#include <csignal>
#include <cstring>
#include <initializer_list>

namespace baleine::train {

namespace {

volatile std::sig_atomic_t received = 0;

void on_stop_signal(int signal) {
  if (received == 0) received = signal;
  // Only async-signal-safe calls here: write(2), not iostreams.
  const char* message =
      signal == SIGINT ? "\nbaleine: SIGINT: finishing this step, saving a checkpoint, then "
                         "exiting (Ctrl-C again exits at once)\n"
                       : "\nbaleine: stop signal: finishing this step, saving a checkpoint, "
                         "then exiting\n";
  const ssize_t ignored = write(STDERR_FILENO, message, std::strlen(message));
  (void)ignored;
  if (signal == SIGINT) std::signal(SIGINT, SIG_DFL);
}

}  // namespace

void install_stop_signal_handlers() {
  for (const int signal : {SIGTERM, SIGUSR1, SIGINT}) {
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;  // MPI's polling and file writes carry on
    sigaction(signal, &action, nullptr);
  }
}

int stop_signal_received() { return received; }

const char* signal_name(int signal) {
  switch (signal) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGINT: return "SIGINT";
    default: return "a signal";
  }
}

}  // namespace baleine::train
