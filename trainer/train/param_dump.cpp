#include "trainer/train/param_dump.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "trainer/errors.h"
#include "trainer/train/run_dir.h"

namespace baleine::train {

void save_params(const std::string& dir, int rank, const model::ParameterStore<float>& params) {
  std::filesystem::create_directories(dir);
  std::ostringstream out;
  out << "baleine-params 1 " << params.entries().size() << "\n";
  const std::vector<float> values = params.values().to_host();
  for (const auto& e : params.entries()) {
    out << e.name << " " << e.size << "\n";
    out.write(reinterpret_cast<const char*>(values.data() + e.offset),
              static_cast<std::streamsize>(e.size * sizeof(float)));
  }
  write_file_atomically(dir + "/rank-" + std::to_string(rank) + ".params", out.str());
}

std::map<std::string, std::vector<float>> load_params(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string magic;
  int version = 0;
  size_t tensors = 0;
  if (!(in >> magic >> version >> tensors) || magic != "baleine-params" || version != 1) {
    throw UserError(path, "", "not a baleine parameter file");
  }
  in.get();
  std::map<std::string, std::vector<float>> out;
  for (size_t t = 0; t < tensors; ++t) {
    std::string name;
    int64_t size = 0;
    if (!(in >> name >> size) || size < 0) throw UserError(path, "", "truncated tensor header");
    in.get();
    std::vector<float> values(static_cast<size_t>(size));
    in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(size * sizeof(float)));
    if (!in) throw UserError(path, "", "truncated values of " + name);
    out[name] = std::move(values);
  }
  return out;
}

}  // namespace baleine::train
