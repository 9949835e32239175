#include "trainer/cli_args.h"

namespace baleine::cli {

UserError usage_error(const std::string& what, const std::string& hint,
                      const std::string& where) {
  return UserError(where, "", what, hint);
}

bool is_option(const std::string& arg, const std::string& name) {
  return arg == name || arg.rfind(name + "=", 0) == 0;
}

std::string option_value(const std::vector<std::string>& args, size_t& i,
                         const std::string& name, const std::string& where) {
  const std::string& a = args[i];
  if (a.size() > name.size() && a[name.size()] == '=') return a.substr(name.size() + 1);
  if (i + 1 >= args.size()) throw usage_error(name + " needs a value", "", where);
  return args[++i];
}

}  // namespace baleine::cli
