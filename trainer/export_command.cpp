// `baleine export`: a checkpoint's parameters (kind "param": the FP32 master weights, whole
// tensors assembled from every shard's ranges) as one safetensors file. Optimizer moments and
// routing biases stay in the checkpoint. The shards' checksums are verified first, so a damaged
// checkpoint is refused (naming the shard) instead of exported.
#include "trainer/export_command.h"

#include <cstdint>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>

#include "trainer/checkpoint/checkpoint_store.h"
#include "trainer/checkpoint/safetensors.h"
#include "trainer/cli_args.h"
#include "trainer/config/did_you_mean.h"
#include "trainer/errors.h"

namespace baleine::cli {

namespace {

namespace fs = std::filesystem;

constexpr const char* kWhere = "baleine export";
const std::vector<std::string> kFormats = {"safetensors"};

std::string export_usage() {
  return "usage: baleine export RUN_DIR|CHECKPOINT_DIR --format safetensors [--output FILE]\n"
         "  Writes the model weights of a checkpoint as one file that other tools read.\n"
         "  RUN_DIR takes its newest complete checkpoint (RUN_DIR/checkpoints/step-N);\n"
         "  CHECKPOINT_DIR names one. The shards' checksums are verified first.\n"
         "  --format safetensors  the FP32 parameters by their baleine names\n"
         "                        (https://huggingface.co/docs/safetensors); metadata: step,\n"
         "                        tokens, model_hash, baleine_version\n"
         "  --output FILE         where to write (default RUN_DIR/export/step-N.safetensors)\n"
         "Optimizer moments and routing biases are not exported (they stay in the checkpoint).\n";
}

// The "did you mean" hint of the other commands (trainer/cli.cpp), for this one's words.
std::string suggestion_hint(const std::string& word, const std::vector<std::string>& known) {
  const std::string guess = config::closest_match(word, known);
  return (guess.empty() ? "" : "did you mean '" + guess + "'? ") + "See 'baleine export --help'.";
}

std::string clean_path(const std::string& path) {
  std::string p = fs::path(path).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

struct ExportSource {
  std::string checkpoint_dir;
  std::string run_dir;  // where export/ goes by default, and where older checkpoints are looked for
};

// A checkpoint directory is RUN_DIR/checkpoints/step-N; one found elsewhere (copied out of its
// run) counts its parent as the run directory.
std::string run_dir_of_checkpoint(const std::string& checkpoint_dir) {
  const fs::path parent = fs::path(checkpoint_dir).parent_path();
  if (parent.filename() == "checkpoints") {
    const std::string run = parent.parent_path().string();
    return run.empty() ? "." : run;
  }
  return parent.empty() ? "." : parent.string();
}

std::string offer_older(const std::string& run_dir, int64_t step, const std::string& fallback) {
  const auto older = ckpt::newest_complete_checkpoint(run_dir, step);
  if (!older) return fallback;
  return "export the next older complete checkpoint: baleine export " + *older +
         " --format safetensors";
}

ExportSource resolve_source(const std::string& argument) {
  const std::string path = clean_path(argument);
  const char* const hint =
      "pass a run directory (the config's run.dir) or one of its checkpoints/step-N directories";
  std::error_code ec;
  if (!fs::exists(path, ec)) throw UserError(path, "", "no such run or checkpoint directory", hint);
  if (!fs::is_directory(path, ec)) throw UserError(path, "", "not a directory", hint);

  if (fs::exists(fs::path(path) / "manifest.json", ec)) {
    ExportSource source{path, run_dir_of_checkpoint(path)};
    if (!ckpt::is_complete_checkpoint(path)) {
      const auto step = ckpt::parse_checkpoint_dir_name(fs::path(path).filename().string());
      throw UserError(path, "",
                      "incomplete checkpoint: no DONE marker (its writer was interrupted, so it "
                      "may be torn)",
                      offer_older(source.run_dir, step.value_or(INT64_MAX),
                                  "no complete checkpoint is older; pass the run directory to "
                                  "take its newest complete one"));
    }
    return source;
  }

  const std::vector<ckpt::CheckpointEntry> entries = ckpt::find_checkpoints(path);
  for (const ckpt::CheckpointEntry& e : entries) {
    if (e.complete) return {e.path, path};
  }
  const std::string root = ckpt::checkpoints_root(path);
  std::string what = "no complete checkpoint in " + root;
  if (!entries.empty()) {
    what += " (" + std::to_string(entries.size()) + " incomplete: their writers were interrupted)";
  }
  throw UserError(kWhere, "", what,
                  "a run writes a checkpoint every checkpoint.every steps and at its end: train "
                  "with e.g. --set checkpoint.every=100, or pass a checkpoints/step-N directory");
}

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;  // the writer has checked the shape before `fill` runs
  return n;
}

// Every parameter's full shape, by name. Records of one tensor must agree on it.
std::map<std::string, std::vector<int64_t>> parameter_shapes(const std::string& checkpoint_dir,
                                                             const ckpt::Manifest& m) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const ckpt::Record& r : m.records) {
    if (r.kind != ckpt::Kind::kParam) continue;
    if (r.dtype != ckpt::DType::kF32) {
      throw UserError(checkpoint_dir + "/manifest.json", "",
                      "parameter '" + r.name + "' is stored as " + ckpt::dtype_name(r.dtype) +
                          "; parameters are FP32 master weights",
                      "the manifest is damaged or was written by another program");
    }
    const auto [it, inserted] = shapes.emplace(r.name, r.shape);
    if (!inserted && it->second != r.shape) {
      throw UserError(checkpoint_dir + "/manifest.json", "",
                      "the records of parameter '" + r.name + "' disagree on its shape",
                      "the manifest is damaged");
    }
  }
  if (shapes.empty()) {
    throw UserError(checkpoint_dir + "/manifest.json", "", "the checkpoint holds no parameters",
                    "the manifest is damaged or was written by another program");
  }
  return shapes;
}

std::string default_output(const ExportSource& source, int64_t step) {
  return (fs::path(source.run_dir) / "export" / (ckpt::checkpoint_dir_name(step) + ".safetensors"))
      .string();
}

void create_parent(const std::string& file) {
  const fs::path parent = fs::path(file).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) {
    throw UserError(parent.string(), "", "cannot create the output directory: " + ec.message(),
                    "choose another place with --output FILE");
  }
}

}  // namespace

int run_export(const std::vector<std::string>& args) {
  std::string input, format, output;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::cout << export_usage();
      return 0;
    } else if (is_option(a, "--format")) {
      format = option_value(args, i, "--format", kWhere);
      if (format != "safetensors") {
        throw usage_error("unknown format '" + format + "' (known: " + config::join(kFormats) + ")",
                          suggestion_hint(format, kFormats), kWhere);
      }
    } else if (is_option(a, "--output")) {
      output = option_value(args, i, "--output", kWhere);
      if (output.empty()) throw usage_error("--output needs a file name", "", kWhere);
    } else if (a.rfind("-", 0) == 0) {
      throw usage_error("unknown option '" + a + "'",
                        suggestion_hint(a, {"--format", "--output", "--help"}), kWhere);
    } else if (input.empty()) {
      input = a;
    } else {
      throw usage_error("unexpected argument '" + a + "' (exporting '" + input + "')",
                        "export one run or checkpoint directory at a time", kWhere);
    }
  }
  if (input.empty()) throw usage_error("missing RUN_DIR or CHECKPOINT_DIR", export_usage(), kWhere);
  if (format.empty()) {
    throw usage_error("missing --format", "add --format safetensors (the one format so far)",
                      kWhere);
  }
  std::error_code ec;
  if (!output.empty() && fs::is_directory(output, ec)) {
    throw usage_error("--output " + output + " is a directory", "name the file to write",
                      kWhere);
  }

  const ExportSource source = resolve_source(input);
  const ckpt::Manifest manifest = ckpt::read_manifest(source.checkpoint_dir);
  const std::string damaged = ckpt::verify_shards(source.checkpoint_dir, manifest);
  if (!damaged.empty()) {
    throw UserError(source.checkpoint_dir, "", damaged,
                    offer_older(source.run_dir, manifest.step,
                                "the checkpoint is damaged and no older complete one exists"));
  }

  const ckpt::TensorReader reader(source.checkpoint_dir, manifest);
  std::vector<ckpt::SafetensorsSource> tensors;
  for (const auto& [name, shape] : parameter_shapes(source.checkpoint_dir, manifest)) {
    tensors.push_back({name, shape, [&reader, name = name, n = element_count(shape)](float* dst) {
                         reader.read(name, ckpt::Kind::kParam, ckpt::DType::kF32, 0, n, dst);
                       }});
  }
  // Values are strings, as the format requires of __metadata__.
  const std::map<std::string, std::string> metadata = {
      {"baleine_version", manifest.baleine_version},
      {"step", std::to_string(manifest.step)},
      {"tokens", std::to_string(manifest.tokens)},
      {"model_hash", manifest.model_hash}};

  if (output.empty()) output = default_output(source, manifest.step);
  create_parent(output);
  const ckpt::SafetensorsWriteSummary written = ckpt::write_safetensors(output, tensors, metadata);

  // Read the header back: a file other tools would refuse must not be reported as written.
  const ckpt::SafetensorsHeader check = ckpt::parse_safetensors(output);
  if (static_cast<int64_t>(check.tensors.size()) != written.tensors ||
      check.file_bytes != written.file_bytes) {
    throw std::logic_error("export: " + output + " does not read back as written");
  }

  std::cout << "exported " << source.checkpoint_dir << " (step " << manifest.step << ", "
            << manifest.tokens << " tokens)\n"
            << "  file        " << output << "\n"
            << "  tensors     " << written.tensors << "\n"
            << "  parameters  " << written.elements << "\n"
            << "  bytes       " << written.file_bytes << " (header " << written.header_bytes
            << ")\n";
  return 0;
}

}  // namespace baleine::cli
