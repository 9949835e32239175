#pragma once
// `baleine export RUN_DIR|CHECKPOINT_DIR --format safetensors [--output FILE]`: the model
// weights of a checkpoint (the newest complete one of a run dir, or the one named) as one
// safetensors file that other tools read (https://huggingface.co/docs/safetensors: an 8-byte
// little-endian header length, a JSON header of name → dtype, shape, data_offsets, then the raw
// tensors). Weights only: optimizer moments and routing biases stay in the checkpoint.
#include <string>
#include <vector>

namespace baleine::cli {

// Returns the exit status; throws UserError for bad input (exit 2).
int run_export(const std::vector<std::string>& args);

}  // namespace baleine::cli
