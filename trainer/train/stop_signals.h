#pragma once
// SIGTERM and SIGUSR1 (what Slurm sends before preempting or at a job's time limit; see
// `sbatch --signal`) and SIGINT (Ctrl-C) ask the run to stop cleanly: the current step
// finishes, a checkpoint is saved, the ledger is written, and the process exits with
// kExitStopped. A second SIGINT exits at once (the handler is reset after the first).
// The request is seen by every rank at the end of the step (the trainer sums the flags over
// the world), so a signal delivered to any one rank stops them all at the same step.
namespace baleine::train {

void install_stop_signal_handlers();
// The signal received (SIGTERM, SIGUSR1 or SIGINT), or 0.
int stop_signal_received();
// "SIGTERM", "SIGUSR1", "SIGINT", or "signal N".
const char* signal_name(int signal);

}  // namespace baleine::train
