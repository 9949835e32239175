#include "trainer/cli.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "baleine_version.h"
#include "kernels/device.h"
#include "parallel/process_groups.h"
#include "parallel/runtime.h"
#include "trainer/config/config.h"
#include "trainer/config/did_you_mean.h"
#include "trainer/data/prepare.h"
#include "trainer/cli_args.h"
#include "trainer/errors.h"
#include "trainer/export_command.h"
#include "trainer/plan_command.h"
#include "trainer/report_command.h"
#include "trainer/schedule_command.h"
#include "trainer/train/run_ledger.h"
#include "trainer/train/trainer.h"

namespace baleine::cli {

namespace {

const std::vector<std::string> kCommands = {"train",  "data",   "schedule", "plan",
                                            "report", "export", "help"};

std::string train_usage() {
  return "usage: baleine train CONFIG.yaml [--set KEY=VALUE]... [--resume-from CHECKPOINT]\n"
         "                     [--save-params DIR]\n"
         "  Trains the model described by CONFIG.yaml. Run it alone, or under mpirun/srun\n"
         "  with parallel.pp x parallel.dp processes.\n"
         "  --set KEY=VALUE    override any config key, e.g. --set train.steps=500\n"
         "                     (repeatable; VALUE is YAML; validated like the file)\n"
         "  --resume-from CHECKPOINT\n"
         "                     resume from this checkpoint directory; without it, a run dir\n"
         "                     with checkpoints resumes from its newest complete one\n"
         "  --save-params DIR  at the end, every rank writes the parameters it holds to\n"
         "                     DIR/rank-<R>.params (global names; for comparing layouts)\n"
         "  Exit status: 0 done, 2 invalid input, 3 a rank died or hung (collective timeout),\n"
         "  4 stopped by SIGTERM/SIGUSR1/SIGINT after saving a checkpoint (rerun to resume),\n"
         "  5 stopped by the numerical guard, 1 internal error.\n";
}

std::string data_usage() {
  return "usage: baleine data prepare --input PATH... --output DIR [--val-fraction F]\n"
         "                            [--shard-tokens N]\n"
         "  Tokenizes text files (byte-level: 256 byte tokens + end-of-text 256, one document\n"
         "  per file; directories are walked recursively) into token shards:\n"
         "  DIR/train_000000.bin ... and DIR/val_000000.bin ...\n"
         "  --val-fraction F  last fraction of the tokens kept for validation (default 0.1)\n"
         "  --shard-tokens N  tokens per shard file (default 100000000)\n";
}

std::string suggestion_hint(const std::string& word, const std::vector<std::string>& known,
                            const std::string& help_command) {
  const std::string guess = config::closest_match(word, known);
  std::string hint = guess.empty() ? "" : "did you mean '" + guess + "'? ";
  return hint + "See '" + help_command + "'.";
}

double parse_number(const std::string& text, const std::string& option) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0') {
    throw usage_error(option + ": expected a number, got '" + text + "'", "");
  }
  return v;
}

int run_train(const std::vector<std::string>& args, int* argc, char*** argv) {
  std::string config_path;
  std::vector<std::string> overrides;
  train::TrainOptions options;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::cout << train_usage();
      return 0;
    } else if (is_option(a, "--set")) {
      overrides.push_back(option_value(args, i, "--set"));
    } else if (is_option(a, "--resume-from")) {
      options.resume_from = option_value(args, i, "--resume-from");
    } else if (is_option(a, "--save-params")) {
      options.save_params_dir = option_value(args, i, "--save-params");
    } else if (a.rfind("-", 0) == 0) {
      throw usage_error("train: unknown option '" + a + "'",
                        suggestion_hint(a, {"--set", "--resume-from", "--save-params", "--help"},
                                        "baleine train --help"));
    } else if (config_path.empty()) {
      config_path = a;
    } else {
      throw usage_error("train: unexpected argument '" + a + "' (the config is '" +
                            config_path + "')",
                        "pass one CONFIG.yaml; override keys with --set KEY=VALUE");
    }
  }
  if (config_path.empty()) throw usage_error("train: missing CONFIG.yaml", train_usage());

  parallel::MpiRuntime mpi(argc, argv);
  const auto& process = mpi.info();
  // Ranks sharing a node share its cores: without OMP_NUM_THREADS, give each rank its share,
  // so that 4 ranks on 2 cores do not run 8 spinning OpenMP threads.
  if (!std::getenv("OMP_NUM_THREADS") && process.local_size > 1) {
    omp_set_num_threads(std::max(1, omp_get_num_procs() / process.local_size));
  }
  try {
    const config::RunConfig config = config::load_config(config_path, overrides);
    auto groups = parallel::ProcessGroups::create(config, process);
    if (process.rank == 0) {
      std::cout << "baleine " << BALEINE_VERSION << " train " << config_path << "\n";
      config::print_config_table(config, std::cout);
    }
    std::ostream discard(nullptr);  // no buffer: what other ranks would print goes nowhere
    const auto summary =
        train::train(config, groups, options, process.rank == 0 ? std::cout : discard);
    return summary.exit_status;
  } catch (const UserError& e) {
    // Every rank reads the same config, so every rank fails the same way; only rank 0 speaks.
    if (process.rank == 0) {
      std::cerr << "error: " << e.what() << "\n";
      if (!e.hint().empty()) std::cerr << "HINT: " << e.hint() << "\n";
    }
    return kExitInvalidInput;
  }
  return 0;
}

int run_data(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::cerr << data_usage();
    return kExitInvalidInput;
  }
  if (args[0] == "--help" || args[0] == "-h") {
    std::cout << data_usage();
    return 0;
  }
  if (args[0] != "prepare") {
    throw usage_error("data: unknown subcommand '" + args[0] + "'",
                      suggestion_hint(args[0], {"prepare"}, "baleine data --help"));
  }
  data::PrepareOptions options;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    const auto is = [&](const std::string& name) { return is_option(a, name); };
    if (a == "--help" || a == "-h") {
      std::cout << data_usage();
      return 0;
    } else if (is("--input")) {
      options.inputs.push_back(option_value(args, i, "--input"));
      // Further plain arguments after --input are more inputs (shell globs expand to many).
      while (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) options.inputs.push_back(args[++i]);
    } else if (is("--output")) {
      options.output_dir = option_value(args, i, "--output");
    } else if (is("--val-fraction")) {
      options.val_fraction = parse_number(option_value(args, i, "--val-fraction"), "--val-fraction");
      if (!(options.val_fraction >= 0 && options.val_fraction < 1)) {
        throw usage_error("--val-fraction must be in [0, 1)", "");
      }
    } else if (is("--shard-tokens")) {
      const double n = parse_number(option_value(args, i, "--shard-tokens"), "--shard-tokens");
      if (n < 1 || n != static_cast<double>(static_cast<int64_t>(n))) {
        throw usage_error("--shard-tokens must be a positive integer", "");
      }
      options.shard_tokens = static_cast<int64_t>(n);
    } else {
      throw usage_error("data prepare: unknown argument '" + a + "'",
                        suggestion_hint(a, {"--input", "--output", "--val-fraction",
                                            "--shard-tokens"},
                                        "baleine data --help"));
    }
  }
  if (options.inputs.empty()) throw usage_error("data prepare: no --input given", data_usage());
  if (options.output_dir.empty()) throw usage_error("data prepare: no --output given", data_usage());
  data::prepare_byte_corpus(options, std::cout);
  return 0;
}

}  // namespace

std::string usage() {
  return "baleine " BALEINE_VERSION
         " -- train mixture-of-experts language models, cheaply\n\n"
         "usage: baleine <command> [args]\n\n"
         "commands:\n"
         "  train CONFIG.yaml [--set KEY=VALUE]...   train a model (alone or under mpirun/srun)\n"
         "  data prepare --input PATH... --output DIR  tokenize text into token shards\n"
         "  schedule CONFIG.yaml [--costs F,B,W,FB]    show and simulate the pipeline schedule\n"
         "  plan CONFIG.yaml [--tokens N]              predict GPU-hours, memory and $ (no training)\n"
         "  report RUN_DIR... [--output DIR]           the cost report of runs, or of phases merged\n"
         "  export RUN_DIR --format safetensors        a checkpoint's weights for other tools\n"
         "  help                                       this text\n\n"
         "options: --help, --version\n"
         "Each command takes --help. Exit status: 0 success, 2 invalid input, 1 internal error.\n";
}

int run(int argc, char** argv) {
  train::process_start();  // the GPU-hour ledger counts a rank's time from here (startup)
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.empty()) {
      std::cerr << usage();
      return kExitInvalidInput;
    }
    const std::string command = args[0];
    const std::vector<std::string> rest(args.begin() + 1, args.end());
    if (command == "--help" || command == "-h" || command == "help") {
      std::cout << usage();
      return 0;
    }
    if (command == "--version") {
      std::cout << "baleine " << BALEINE_VERSION << " (" << BALEINE_BUILD_TYPE
                << "; CPU backend; " << kernels::cuda_summary() << ")\n";
      return 0;
    }
    if (command == "train") return run_train(rest, &argc, &argv);
    if (command == "data") return run_data(rest);
    if (command == "schedule") return run_schedule(rest);
    if (command == "plan") return run_plan(rest);
    if (command == "report") return run_report(rest);
    if (command == "export") return run_export(rest);
    throw usage_error("unknown command '" + command + "'",
                      suggestion_hint(command, kCommands, "baleine --help"));
  } catch (const UserError& e) {
    std::cerr << "error: " << e.what() << "\n";
    if (!e.hint().empty()) std::cerr << "HINT: " << e.hint() << "\n";
    return kExitInvalidInput;
  }
}

}  // namespace baleine::cli
