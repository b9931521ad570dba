// See ../context.h: declarations only. ProcessGroupGloo::GlooStore overrides these four
// functions (GLOO_STORE_HAS_STORE_V2 is left undefined, so the v2 ones are not declared).
// ssl-dist never creates a GlooStore; libtorch does, with its own Gloo.
#pragma once
#include <chrono>
#include <string>
#include <vector>

namespace gloo {
namespace rendezvous {
class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(
      const std::vector<std::string>& keys,
      const std::chrono::milliseconds& timeout) = 0;
};
} // namespace rendezvous
} // namespace gloo
